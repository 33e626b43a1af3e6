"""textual-serve's web server with this game's page: its title and favicon, the terminal sized
to the window, no web fonts from a CDN, and links that work however the page was reached.

Kept apart from :mod:`game.serve` so that the CLI imports aiohttp only when it serves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server, to_int

from game.serve import is_loopback

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).parent / "serve_page"


class GameServer(Server):
    """One game process per browser tab, started from ``command`` (a shell command line)."""

    def __init__(self, command: str, *, host: str, port: int, title: str) -> None:
        super().__init__(command, host=host, port=port, title=title, templates_path=PAGE_DIR)
        shown = f"[{host}]" if ":" in host else host
        self.url_hint = (
            f"http://{shown}:{port}/" if is_loopback(host) else f"http://<this machine>:{port}/"
        )

    def initialize_logging(self) -> None:
        """The game's logging is already set up (a log file; console lines from serve)."""

    async def on_startup(self, app: web.Application) -> None:
        log.info("serve: listening on %s:%s", self.host, self.port)

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """The page. Its links use the address the browser asked for (``Host``), not the one
        listened on: a server on 0.0.0.0 is reached as http://laptop:8000, never as 0.0.0.0.
        """
        origin = f"{request.scheme}://{request.host}"
        static = origin + str(request.app.router["static"].url_for(filename="/")).rstrip("/")
        websocket = origin + str(request.app.router["websocket"].url_for())
        scheme = "wss:" if origin.startswith("https:") else "ws:"
        return {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": scheme + websocket.split(":", 1)[1],
            "config": {"static": {"url": static + "/"}},
            "application": {"name": self.title},
        }
