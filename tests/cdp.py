"""A small Chrome DevTools Protocol client for the browser tests: Debian's chromium, headless,
driven over its DevTools websocket with aiohttp (which textual-serve already needs).

Only what the tests use: open a tab, run JavaScript, type, press keys, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from threading import Thread
from typing import Any

import aiohttp

# Flags for a quiet, offline, throwaway browser: no sandbox (CI runs as root), no GPU, no
# network of its own (updates, sync, QUIC), a fresh profile.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
    "--remote-debugging-port=0",
]

# key name -> (code, Windows virtual key code, text typed)
KEYS = {
    "Enter": ("Enter", 13, "\r"),
    "Escape": ("Escape", 27, ""),
    "F2": ("F2", 113, ""),
    "F4": ("F4", 115, ""),
    "F8": ("F8", 119, ""),
    "F9": ("F9", 120, ""),
}


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


class Browser:
    """A headless chromium and its DevTools connection."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.profile = tempfile.mkdtemp(prefix="cdp-profile-")
        self.process: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> None:
        self.process = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = await asyncio.wait_for(asyncio.to_thread(self._devtools_url), timeout)
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    def _devtools_url(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            match = re.search(rb"DevTools listening on (ws://\S+)", raw)
            if match:
                # Keep draining stderr so that the browser never blocks on a full pipe.
                Thread(target=_drain, args=(self.process.stderr,), daemon=True).start()
                return match.group(1).decode()
        raise RuntimeError(f"chromium exited ({self.process.wait()}) without a DevTools url")

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            data = message.json()
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        assert self.ws is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_json(message)
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def open(self, url: str) -> Tab:
        target = await self.send("Target.createTarget", {"url": url})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        return Tab(self, attached["sessionId"])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("Browser.close")
        if self._reader is not None:
            self._reader.cancel()
        if self.http is not None:
            await self.http.close()
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    """One page of the browser."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll a JavaScript expression until it is truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.2)

    async def focus_terminal(self) -> None:
        """Give the keyboard to xterm.js (its hidden textarea takes the keys)."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")

    async def type(self, text: str) -> None:
        await self.focus_terminal()
        await self.send("Input.insertText", {"text": text})

    async def press(self, key: str) -> None:
        await self.focus_terminal()
        if key in KEYS:
            code, vk, text = KEYS[key]
        else:  # one letter or digit
            code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
            vk, text = ord(key.upper()), key
        down: dict[str, Any] = {
            "type": "keyDown" if text else "rawKeyDown",
            "key": key,
            "code": code,
            "windowsVirtualKeyCode": vk,
        }
        if text:
            down["text"] = text
        await self.send("Input.dispatchKeyEvent", down)
        await self.send(
            "Input.dispatchKeyEvent",
            {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk},
        )

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(data["data"]))
        return path
