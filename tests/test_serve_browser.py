"""``python -m game serve`` in a real headless Chromium (Debian's ``chromium``, ``make browser``).

The server runs as a subprocess on a free loopback port, every tab's game process is started by
it exactly as for a player, and the browser is driven through its DevTools protocol
(tests/cdp.py). The tabs play on the scripted backend (a test hook read by the tab command), so
that a tab does not wait for a model. What the tab shows is checked in the tab's own log lines
(xterm.js draws on a canvas, not into the page's text) and in the save files; a screenshot of
each tab is kept (``GAME_TEST_SCREENSHOTS=DIR`` keeps them after the run).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from game.saves import load
from game.serve import SCRIPTED_ENV
from tests.cdp import Browser, Tab, find_chromium

ROOT = Path(__file__).resolve().parent.parent
# The scripted backend's reply: its first option is what picking "1" plays.
FIRST_CHOICE = "Go north."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, url: str, saves: Path, log: Path, process: subprocess.Popen[bytes]):
        self.url, self.saves, self.log, self.process = url, saves, log, process

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []

    def wait_log(self, pattern: str, timeout: float = 60.0, count: int = 1) -> list[re.Match]:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for line in self.log_lines() if (m := re.search(pattern, line))]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                tail = "\n".join(self.log_lines()[-30:])
                raise AssertionError(f"no log line {pattern!r} (x{count}); log ends:\n{tail}")
            time.sleep(0.2)


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.fail("chromium is not installed: `make browser` (apt-get install -y chromium)")
    return path


def start_server(tmp_path: Path, *extra: str, scripted: bool = True) -> Served:
    port = free_port()
    saves, log = tmp_path / "browser-saves", tmp_path / "game.log"
    env = {**os.environ, SCRIPTED_ENV: "1" if scripted else "0"}
    command = [sys.executable, "-m", "game", "--log-file", str(log), "serve"]
    command += ["--port", str(port), "--saves", str(saves), *extra]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                assert response.status == 200
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"serve did not start: {process.stdout.read()!r}") from None
            time.sleep(0.2)
    return Served(url, saves, log, process)


def stop_server(served: Served) -> str:
    served.process.send_signal(signal.SIGINT)
    try:
        out, _ = served.process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        served.process.kill()
        out, _ = served.process.communicate()
    return out.decode("utf-8", "replace")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = start_server(tmp_path)
    yield served
    stop_server(served)


async def open_tab(browser: Browser, served: Served) -> Tab:
    tab = await browser.open(served.url)
    # The page is ours (title), and the game's process has sent its first screen.
    await tab.wait_for("document.title === 'Metharme Adventure'")
    await tab.wait_for("document.body.classList.contains('-first-byte')")
    await tab.wait_for("!!document.querySelector('.xterm-helper-textarea')")
    await tab.focus_terminal()
    return tab


def only_save(folder: Path, exchanges: int, timeout: float = 60.0):
    """The one save in ``folder`` once it holds ``exchanges`` exchanges."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if len(files) == 1:
            try:
                save = load(files[0])
            except Exception:  # being written: read again
                save = None
            if save is not None and len(save.turns) == 2 * exchanges:
                return save
        if time.monotonic() > deadline:
            raise AssertionError(f"no save with {exchanges} exchanges in {folder}: {files}")
        time.sleep(0.2)


def keep_screenshot(path: Path) -> None:
    keep = os.environ.get("GAME_TEST_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


async def test_two_browser_tabs_play_two_games_into_their_players_folders(
    chromium: str, served: Served, tmp_path: Path
) -> None:
    browser = Browser(chromium)
    await browser.start()
    try:
        alice, bob = await open_tab(browser, served), await open_tab(browser, served)
        # Each tab asks its player's name first.
        served.wait_log(r"browser tab \d+: asking a name", count=2)
        await alice.focus_terminal()
        await alice.type("Alice")
        await alice.press("Enter")
        served.wait_log(r"browser tab \d+: player 'Alice' saves in .*/alice$")
        await bob.focus_terminal()
        await bob.type("Bob")
        await bob.press("Enter")
        served.wait_log(r"browser tab \d+: player 'Bob' saves in .*/bob$")
        served.wait_log(r"browser tab \d+: start screen shown", count=2)

        # Enter on the start screen starts the highlighted scenario; the game plays its opening
        # and saves itself into the player's folder.
        await alice.press("Enter")
        await bob.press("Enter")
        first = only_save(served.saves / "alice", 1)
        only_save(served.saves / "bob", 1)
        assert first.turns[1].choices[0] == FIRST_CHOICE

        # Alice picks choice 1 with its key; Bob types his own action.
        await alice.press("1")
        await bob.type("I dance in the hall")
        await bob.press("Enter")
        alice_save = only_save(served.saves / "alice", 2)
        bob_save = only_save(served.saves / "bob", 2)
        assert alice_save.turns[2].text == FIRST_CHOICE
        assert bob_save.turns[2].text == "I dance in the hall"
        assert "dance" not in " ".join(turn.text for turn in alice_save.turns)
        assert sorted(p.name for p in served.saves.iterdir()) == ["alice", "bob"]

        shot = await alice.screenshot(tmp_path / "browser-alice-playing.png")
        keep_screenshot(shot)
        assert shot.stat().st_size > 10_000  # a drawn terminal, not a blank page

        # F4, the browser's key for "new game" (ctrl+n opens a browser window), goes back to
        # the scenarios; the game was saved before.
        await alice.press("F4")
        served.wait_log(r"browser tab \d+: start screen shown", count=3)
        keep_screenshot(await alice.screenshot(tmp_path / "browser-alice-start.png"))
    finally:
        await browser.close()
    # Closing the tabs ends their processes; the saves are whole.
    only_save(served.saves / "alice", 2)


async def test_session_folders_keep_tabs_apart_without_a_name(
    chromium: str, tmp_path: Path
) -> None:
    served = start_server(tmp_path, "--saves-per", "session")
    browser = Browser(chromium)
    await browser.start()
    try:
        one, two = await open_tab(browser, served), await open_tab(browser, served)
        served.wait_log(r"start screen shown", count=2)  # no name asked
        await one.press("Enter")
        await two.press("Enter")
        folders = []
        deadline = time.monotonic() + 60
        while len(folders) < 2 and time.monotonic() < deadline:
            folders = sorted(p for p in served.saves.glob("session-*") if any(p.glob("*.json")))
            await asyncio.sleep(0.2)
        assert len(folders) == 2, folders
        for folder in folders:
            assert only_save(folder, 1).turns[0].text == "Start!"
    finally:
        await browser.close()
        stop_server(served)


@pytest.mark.model
async def test_a_browser_tab_plays_on_the_embedded_model(chromium: str, tmp_path: Path) -> None:
    served = start_server(
        tmp_path, "--saves-per", "shared", "--max-tokens", "64", "--seed", "3", scripted=False
    )
    browser = Browser(chromium)
    await browser.start()
    try:
        tab = await open_tab(browser, served)
        served.wait_log(r"start screen shown")
        await tab.press("Enter")
        save = only_save(served.saves, 1, timeout=240)
        assert save.model is not None and save.model.file.endswith(".gguf")
        reply = save.turns[1]
        assert reply.text.strip()
        assert len(reply.choices) == 3  # guided: the grammar gives the options
        await tab.press("2")
        save = only_save(served.saves, 2, timeout=240)
        assert save.turns[2].text == reply.choices[1]
        keep_screenshot(await tab.screenshot(tmp_path / "browser-embedded-model.png"))
    finally:
        await browser.close()
        stop_server(served)
