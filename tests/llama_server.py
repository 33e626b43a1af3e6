"""A real llama.cpp ``llama-server`` on 127.0.0.1 for the remote-backend tests.

The binary is the one ``scripts/build-llama-tools.sh`` (``make llama-tools``) builds from the
llama.cpp source that llama-cpp-python vendors. A missing binary fails the tests that need it,
loudly: CI builds it before the tests (the Makefile's ``test`` target depends on it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from game.config import embedded_model_path

START_TIMEOUT_S = 60.0


# Read when the tests are collected, before a test gives itself a private cache folder: the
# build lives in the machine's own cache.
_CACHE_HOME = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
_TOOLS_DIR = os.environ.get("LLAMA_TOOLS_DIR")


def tools_root() -> Path:
    return Path(_TOOLS_DIR or Path(_CACHE_HOME) / "metharme-adventure" / "llama-tools")


def find_llama_server() -> Path:
    """The built ``llama-server`` (``$LLAMA_SERVER`` when set).

    Raises:
        RuntimeError: when none is built; the message says how to build it.
    """
    named = os.environ.get("LLAMA_SERVER")
    if named:
        return Path(named)
    found = sorted(tools_root().glob("*/bin/llama-server"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise RuntimeError(
            f"llama-server is not built (looked in {tools_root()}): run `make llama-tools` "
            "(scripts/build-llama-tools.sh) before the tests"
        )
    return found[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LlamaServer:
    """One ``llama-server`` process on the embedded model.

    Args:
        slots: Parallel slots; each has ``slot_ctx`` tokens of context.
        extra: More command-line arguments (``--api-key``, ``--no-slots`` ...).
    """

    def __init__(
        self, log_dir: Path, *, slots: int = 2, slot_ctx: int = 1024, extra: tuple[str, ...] = ()
    ):
        self.binary = find_llama_server()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"llama-server-{self.port}.log"
        self.slot_dir = log_dir / f"slots-{self.port}"
        self.slot_dir.mkdir(parents=True, exist_ok=True)
        self.args = [
            str(self.binary),
            "--model",
            str(embedded_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ctx-size",
            str(slots * slot_ctx),
            "--parallel",
            str(slots),
            "--threads",
            "2",
            "--slot-save-path",
            str(self.slot_dir),
            "--no-webui",
            # llama-cpp-python runs without flash attention; the server decides by itself
            # ("auto") and then rounds differently, so greedy replies part after a few words.
            "--flash-attn",
            "off",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.api_key = next(
            (extra[i + 1] for i, arg in enumerate(extra) if arg == "--api-key"), None
        )

    def start(self) -> LlamaServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {self.process.returncode}; see {self.log_path}"
                )
            if self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"llama-server did not come up in {START_TIMEOUT_S} s; see {self.log_path}"
        )

    def _healthy(self) -> bool:
        request = urllib.request.Request(f"{self.url}/health")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                return json.load(answer).get("status") == "ok"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
