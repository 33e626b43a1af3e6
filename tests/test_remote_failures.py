"""What a player sees when the server fails: one line, and nothing lost.

The command line runs as a player runs it (a subprocess); a server that dies mid-reply is a real
llama-server killed; hostile answers come from a stub HTTP server."""

from __future__ import annotations

import http.server
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.backends.base import BackendError
from game.backends.remote import RemoteBackend
from game.catalog import builtin_catalog, find_entry
from game.config import load_settings
from game.controller import GameController
from game.models import ModelHost
from game.runtime import open_backend
from game.saves import load as load_save
from tests.factories import REPO
from tests.llama_server import LlamaServer, free_port


def run_game(*args: str, tmp_path: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "game", "--log-file", str(tmp_path / "game.log"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def _saves(home: Path) -> list[Path]:
    folder = home / "saves"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_no_server_running(tmp_path, private_folders):
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_game("play", "--headless", "--server", url, tmp_path=tmp_path, stdin="/quit\n")
    line = _one_error_line(proc)
    assert line == f"error: no server answers at {url} (connection refused)"
    assert _saves(private_folders) == []


def test_not_a_url(tmp_path):
    proc = run_game("play", "--headless", "--server", "gpu-box:8080", tmp_path=tmp_path)
    assert "not a server URL" in _one_error_line(proc)


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the class's status and body."""

    status = 404
    body = b"<html>not here</html>"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    _Stub.status, _Stub.body = 404, b"<html>not here</html>"


def test_a_wrong_url(tmp_path, stub, private_folders):
    url = f"http://127.0.0.1:{stub.server_address[1]}/nothing"
    proc = run_game("play", "--headless", "--server", url, tmp_path=tmp_path, stdin="/quit\n")
    line = _one_error_line(proc)
    assert "HTTP 404" in line and url in line
    assert _saves(private_folders) == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from([200, 400, 401, 500, 502, 503]),
    body=st.one_of(
        st.binary(max_size=300),
        st.just(b'{"default_generation_settings": {"n_ctx": "many"}, "total_slots": -3}'),
        st.just(b'{"default_generation_settings": {"n_ctx": 512}, "total_slots": 1}'),
        st.just(b'data: {"tokens": [1]}\n\n'),
        st.just(b"[1, 2, 3]"),
    ),
)
def test_hostile_answers_are_one_line(stub, status, body, monkeypatch):
    """Whatever the server sends, opening the backend either works or raises BackendError with
    one line; never another exception."""
    monkeypatch.setattr("game.backends.http.RETRY_PAUSE_S", 0.0)
    _Stub.status, _Stub.body = status, body
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    try:
        RemoteBackend(url)
    except BackendError as exc:
        assert "\n" not in str(exc)


def test_a_wrong_api_key_is_one_line_and_never_shown(tmp_path, stub, caplog):
    _Stub.status, _Stub.body = 401, b'{"error": {"message": "Invalid API Key"}}'
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BackendError) as failure:
        RemoteBackend(url, api_key="sekrit-key-123")
    assert "API key was refused" in str(failure.value)
    assert "sekrit" not in str(failure.value)
    assert "sekrit" not in caplog.text
    proc = run_game(
        "play", "--headless", "--server", url, "--api-key", "sekrit-key-123", tmp_path=tmp_path
    )
    assert "API key" in _one_error_line(proc)
    assert "sekrit" not in proc.stderr
    assert "sekrit" not in (tmp_path / "game.log").read_text()


@pytest.mark.model
def test_server_killed_mid_reply_loses_nothing(tmp_path, private_folders):
    """A game on a server that dies while it writes: one line; the game and its save are as
    they were; the same game goes on when the server is back."""
    server = LlamaServer(tmp_path, slots=1, extra=("--api-key", "game-key-42")).start()
    try:
        settings_ = load_settings(
            overrides={
                "server_url": server.url,
                "api_key": "game-key-42",
                "seed": 3,
                "sampling": {"max_tokens": 60},
            }
        )
        entry = find_entry("haunted-house", builtin_catalog())
        game = GameController.new_game(settings_, entry, ModelHost(open_backend), name="remote")
        game.play_opening()
        path = game.slot.path
        saved = path.read_bytes()
        turns = len(game.session.exchanges)
        assert "game-key-42" not in saved.decode()
        assert load_save(path).model.file == f"SmolLM2-135M-Instruct.Q4_1.gguf @ {server.url}"

        def kill_on_first_text(text: str) -> None:
            server.kill()

        with pytest.raises(BackendError) as failure:
            game.play("I open the door.", on_text=kill_on_first_text)
        assert "\n" not in str(failure.value)
        assert "broke off" in str(failure.value) or "no server answers" in str(failure.value)
        assert len(game.session.exchanges) == turns
        assert path.read_bytes() == saved
        # The server comes back on the same port: the game goes on from where it was.
        server.start()
        outcome = game.play("I open the door.")
        assert outcome.save_problem is None
        assert len(game.session.exchanges) == turns + 1
        assert "game-key-42" not in path.read_text()
        game.close()
    finally:
        server.stop()


def test_the_api_key_comes_from_the_environment_and_is_never_written(monkeypatch, tmp_path):
    from game.cli import build_parser, cli_overrides
    from game.config import save_settings

    monkeypatch.setenv("METHARME_API_KEY", "env-key-7")
    args = build_parser().parse_args(["play", "--server", "http://h:1", "--slot", "2"])
    loaded = load_settings(overrides=cli_overrides(args))
    assert loaded.server_url == "http://h:1"
    assert loaded.server_slot == 2
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == "env-key-7"
    assert "env-key-7" not in repr(loaded)
    # Saving another setting never copies the key (from the environment) into the file.
    path = tmp_path / "config.yaml"
    save_settings(loaded.model_copy(update={"n_ctx": 4096}), loaded, path)
    assert "env-key-7" not in path.read_text()
    assert "n_ctx: 4096" in path.read_text()
