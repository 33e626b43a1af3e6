"""``python -m game serve``: the TUI served to browsers, one game process per tab.

textual-serve (by the Textual authors) starts one process per browser tab from a command line
and relays its terminal over a websocket to xterm.js in the page; its wheel ships the
JavaScript, CSS and fonts, so nothing comes from a CDN. The tab's command is the hidden
``browser-tab`` command of this CLI, which builds the app the way ``play`` does
(:func:`game.cli.tui_app`), with the host's limits (:mod:`game.tui.browser`).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from game.config import ConfigError, model_file_problem, resolve_saves_dir
from game.playerdirs import SAVES_PER, session_folder

if TYPE_CHECKING:
    from game.models import BackendFactory
    from game.tui.app import AdventureApp

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
TITLE = "Metharme Adventure"
# Test hook, read by the tab command only: play on the scripted backend instead of a model, so
# that a browser test does not wait for a real model in every tab.
SCRIPTED_ENV = "GAME_TEST_BROWSER_SCRIPTED"
LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` listens on this machine only (``localhost``, 127.x, ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def exposure_warning(host: str, port: int) -> str | None:
    """The warning printed when the server is reachable from other machines."""
    if is_loopback(host):
        return None
    return (
        f"warning: serving on {host}:{port}, not loopback: anyone who can reach this port can "
        "play, with no password, and each tab runs a game process (and, without --server, "
        "loads a model) on this machine. Put it behind a firewall or an authenticating proxy."
    )


def add_commands(
    commands: Any,
    *,
    model_options: Callable[[argparse.ArgumentParser], None],
    pack_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register ``serve`` and the hidden ``browser-tab`` on the CLI's subparsers."""
    serve = commands.add_parser("serve", help="serve the game to web browsers, a game per tab")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this "
        "machine only; 0.0.0.0 for the network, with a warning)",
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8000)")
    serve.add_argument("--title", default=TITLE, help="the page's title")
    _tab_options(serve, pack_option)
    # Every model option given to serve is passed on to each tab, whatever options the CLI's
    # model group has (a remote --server included): remember which actions they are.
    first = len(serve._actions)
    model_options(serve)
    serve.set_defaults(model_actions=serve._actions[first:])

    tab = commands.add_parser("browser-tab")  # no help: started by serve, not by people
    _tab_options(tab, pack_option)
    model_options(tab)


def _tab_options(parser: argparse.ArgumentParser, pack_option: Callable[..., None]) -> None:
    parser.add_argument(
        "--saves",
        type=Path,
        metavar="DIR",
        help="the folder of browser players' saves (default: browser/ in the save folder)",
    )
    parser.add_argument(
        "--saves-per",
        choices=SAVES_PER,
        default="player",
        help="player (default): each tab asks a name, a folder per name; session: a new "
        "folder per tab; shared: one folder for all",
    )
    parser.add_argument(
        "--allow-host-paths",
        action="store_true",
        help="let browser players set the model file and write this machine's config file",
    )
    pack_option(parser)


def _option_words(actions: list[argparse.Action], args: argparse.Namespace) -> list[str]:
    """The command-line words that give ``args``' values of ``actions`` again."""
    words: list[str] = []
    for action in actions:
        value = getattr(args, action.dest, None)
        flag = max(action.option_strings, key=len)
        if value is None or value is False:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def saves_base(args: argparse.Namespace) -> Path:
    """The host's folder for browser saves (absolute: tabs may run elsewhere)."""
    from game.cli import settings_from_args

    if args.saves is not None:
        return args.saves.expanduser().resolve()
    plain = argparse.Namespace(**{**vars(args), "saves": None})
    return (resolve_saves_dir(settings_from_args(plain)) / "browser").resolve()


def tab_command(args: argparse.Namespace) -> list[str]:
    """The command line of one tab's process (its log goes where serve's goes)."""
    words = [sys.executable, "-m", "game"]
    if args.log_file is not None:
        words += ["--log-file", str(args.log_file.expanduser().resolve())]
    words += ["browser-tab", "--saves", str(saves_base(args)), "--saves-per", args.saves_per]
    if args.allow_host_paths:
        words.append("--allow-host-paths")
    for pack in [*(args.top_packs or []), *(args.packs or [])]:
        words += ["--pack", str(pack.expanduser().resolve())]
    return words + _model_words(args)


def _model_words(args: argparse.Namespace) -> list[str]:
    words = _option_words(args.model_actions, args)
    # Paths are made absolute: the tab may start in another folder.
    if "--model" in words:
        index = words.index("--model") + 1
        words[index] = str(Path(words[index]).expanduser().resolve())
    return words


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C. Errors before listening are one line (exit 2)."""
    from game.cli import settings_from_args

    settings = settings_from_args(args)  # bad values fail here, once, not in every tab
    if settings.model_path is not None:
        problem = model_file_problem(settings.model_path.expanduser())
        if problem is not None:
            raise ConfigError(problem)
    base = saves_base(args)
    base.mkdir(parents=True, exist_ok=True)
    command = shlex.join(tab_command(args))
    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    from game.serve_server import GameServer

    server = GameServer(command, host=args.host, port=args.port, title=args.title)
    print(
        f"Serving {args.title} on {server.url_hint} (saves: {base}, a folder per "
        f"{args.saves_per}); Ctrl-C stops.",
        file=sys.stderr,
        flush=True,
    )
    log.info("serve: tab command %s", command)
    try:
        server.serve()
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    return 0


def _tab_backend_factory() -> BackendFactory | None:
    if os.environ.get(SCRIPTED_ENV) != "1":
        return None
    from game.backends.scripted import ScriptedBackend

    def scripted(settings: Any) -> ScriptedBackend:
        return ScriptedBackend(token_delay_s=0.01)

    return scripted


def browser_tab_app(
    args: argparse.Namespace, backend_factory: BackendFactory | None = None
) -> AdventureApp:
    """The app of one browser tab: built by :func:`game.cli.tui_app`, as ``play`` builds it,
    with the host's limits (tests build it here too, with a scripted ``backend_factory``)."""
    from game.cli import tui_app
    from game.tui.browser import BrowserMode

    base = args.saves.expanduser()
    if args.saves_per == "session":
        args.saves = session_folder(base)
    mode = BrowserMode(saves_per=args.saves_per, saves_base=base, host_paths=args.allow_host_paths)
    return tui_app(args, backend_factory or _tab_backend_factory(), browser=mode)


def cmd_browser_tab(args: argparse.Namespace) -> int:
    """One browser tab's game, on textual-serve's driver (set in its environment)."""
    app = browser_tab_app(args)
    app.run()
    return app.return_code or 0
