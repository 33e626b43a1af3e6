"""The browser tab's app (``python -m game serve``'s tabs) through Textual's Pilot, built by the
tab command's own path on the scripted backend; and serve's command line."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from game.backends.scripted import ScriptedBackend
from game.cli import build_parser
from game.playerdirs import player_folder, player_folder_name
from game.saves import SaveNameError
from game.serve import browser_tab_app, exposure_warning, is_loopback, tab_command
from game.tui.browser import PlayerNameScreen
from game.tui.play import PlayScreen
from game.tui.settings import SettingsScreen
from game.tui.start import StartScreen
from tests.test_tui import REPLIES, settle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def tab_app(tmp_path: Path, *words: str):
    args = build_parser().parse_args(["browser-tab", "--saves", str(tmp_path / "b"), *words])
    backend = ScriptedBackend(replies=REPLIES, token_seconds=0.01)
    return browser_tab_app(args, lambda settings: backend)


def footer_key(app, action: str) -> str:
    keys = [key.key_display for key in app.screen.query(FooterKey) if key.action == action]
    assert keys, f"no footer key for {action}"
    return keys[0]


async def test_a_player_name_picks_the_save_folder_and_bad_names_say_why(tmp_path):
    app = tab_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, PlayerNameScreen)
        app.action_load()  # from the command palette: nothing to list before the name
        await pilot.pause()
        assert isinstance(app.screen, PlayerNameScreen)
        await pilot.press(*"!!!", "enter")
        assert isinstance(app.screen, PlayerNameScreen)
        assert "letter or digit" in str(app.screen.query_one("#player-problem").render())
        app.screen.query_one(Input).value = "../Alice"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        assert app.settings.saves_dir == tmp_path / "b" / "alice"
        await pilot.press("enter")  # the highlighted scenario
        await settle(pilot)
        assert isinstance(app.screen, PlayScreen)
        saves = list((tmp_path / "b" / "alice").glob("*.json"))
        assert len(saves) == 1
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["alice"]


async def test_browser_keys_are_in_the_footer_and_work(tmp_path):
    app = tab_app(tmp_path, "--saves-per", "shared")
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)  # no name asked when shared
        await pilot.press("enter")
        await settle(pilot)
        assert footer_key(app, "new_game") == "f4"
        assert footer_key(app, "edit") == "f8"
        assert footer_key(app, "retry") == "f9"
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("f8")  # edit the last action: it comes back into the line
        await settle(pilot)
        assert app.screen.query_one("#action", Input).value == "Circle the house."
        await pilot.press("ctrl+l")  # the terminal's key still works where the browser gives it
        await settle(pilot)
        assert len(app.screen.session.exchanges) == 0
        await pilot.press("f4")
        await settle(pilot)
        assert isinstance(app.screen, StartScreen)
        assert list((tmp_path / "b").glob("*.json"))  # shared: straight into the base folder


async def test_the_terminal_keeps_its_ctrl_keys(tmp_path):
    from game.tui.app import StartAt
    from tests.test_tui import haunted, make_app

    app = make_app(tmp_path, start=StartAt(entry=haunted()))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        assert footer_key(app, "new_game") == "^n"


async def test_browser_settings_hide_the_model_file_and_write_no_config(tmp_path, config_home):
    app = tab_app(tmp_path, "--saves-per", "session")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        assert not app.screen.query("#model_path")
        app.screen.query_one("#n_ctx", Input).value = "1024"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
        assert app.settings.n_ctx == 1024
        assert app.settings.model_path is None
        assert app.settings.saves_dir.parent == tmp_path / "b"  # still the session's folder
        assert app.settings.saves_dir.name.startswith("session-")
    assert not (config_home / "metharme-adventure" / "config.yaml").exists()


async def test_allow_host_paths_gives_the_terminal_settings(tmp_path, config_home):
    app = tab_app(tmp_path, "--saves-per", "shared", "--allow-host-paths")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
        assert app.screen.query("#model_path")
        app.screen.query_one("#n_ctx", Input).value = "1024"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert "n_ctx: 1024" in (config_home / "metharme-adventure" / "config.yaml").read_text()


@given(st.text(max_size=300))
def test_player_folders_never_leave_the_base_folder(name):
    base = Path("/srv/saves")
    try:
        folder = player_folder(base, name)
    except SaveNameError:
        return
    assert folder.parent == base
    assert 1 <= len(folder.name) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in folder.name)
    assert folder.name == folder.name.lower()
    assert player_folder_name(name.upper()) == folder.name or not name.upper().isascii()


@pytest.mark.parametrize(
    ("name", "folder"),
    [("Alice", "alice"), ("  alice ", "alice"), ("../../etc", "etc"), ("Jean Luc", "jean-luc")],
)
def test_player_folder_names(name, folder):
    assert player_folder_name(name) == folder


@pytest.mark.parametrize("name", ["", "   ", "...", "ÄÖÜ", "/", "a\nb", "x" * 201])
def test_unusable_player_names(name):
    with pytest.raises(SaveNameError):
        player_folder_name(name)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.3.4.5", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback
    assert (exposure_warning(host, 8000) is None) is loopback


def test_the_tab_command_passes_serve_options_on(tmp_path):
    model = tmp_path / "m.gguf"
    args = build_parser().parse_args(
        [
            "--log-file",
            str(tmp_path / "log"),
            "serve",
            "--port",
            "9",
            "--saves-per",
            "shared",
            "--pack",
            str(tmp_path / "pack"),
            "--model",
            str(model),
            "--max-tokens",
            "20",
            "--n-ctx",
            "512",
            "--choices",
            "free",
            "--saves",
            str(tmp_path / "s"),
        ]
    )
    words = tab_command(args)
    assert words[:3] == [sys.executable, "-m", "game"]
    tab = build_parser().parse_args(words[3:])  # the tab's own command line parses
    assert tab.command == "browser-tab"
    assert (tab.model, tab.max_tokens, tab.n_ctx, tab.choices) == (model, 20, 512, "free")
    assert tab.saves == tmp_path / "s" and tab.saves_per == "shared"
    assert tab.packs == [tmp_path / "pack"] and not tab.allow_host_paths
    assert tab.log_file == tmp_path / "log"
    assert shlex.split(shlex.join(words)) == words


def run_serve(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "game", "serve", *words],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_on_the_network_warns_and_a_taken_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--host", "0.0.0.0", "--port", str(port), "--saves", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("warning: serving on 0.0.0.0:") and "not loopback" in lines[0]
    assert lines[-1].startswith(f"error: cannot listen on 0.0.0.0:{port}")
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_missing_model_before_listening(tmp_path):
    result = run_serve("--model", str(tmp_path / "none.gguf"), "--saves", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: model file not found: {tmp_path / 'none.gguf'}"
    ]
