"""The command-line options of remote play (``--server`` and its companions), kept apart from
``cli.py`` so that the command line registers them in one call."""

from __future__ import annotations

import argparse
from typing import Any

from game.config import Settings
from game.kvcache import CacheMode


def remote_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--server``, ``--api-key``, ``--dialect`` and ``--slot`` to ``parser``."""
    group = parser.add_argument_group("remote model (instead of a local one)")
    group.add_argument(
        "--server",
        metavar="URL",
        help="play on a llama-server or OpenAI-compatible engine (vLLM) at URL, "
        "e.g. http://127.0.0.1:8080",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="the server's API key (better: the METHARME_API_KEY environment variable, which "
        "other users cannot see in the process list)",
    )
    group.add_argument(
        "--dialect",
        choices=["llama-server", "openai"],
        help="the server's API (default: llama-server when it answers /props, else openai)",
    )
    group.add_argument(
        "--slot",
        type=int,
        metavar="N",
        help="llama-server: the slot this game keeps (default: an idle one no game has used)",
    )


def remote_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the remote options give (only those given)."""
    values = {
        "server_url": getattr(args, "server", None),
        "api_key": getattr(args, "api_key", None),
        "server_dialect": getattr(args, "dialect", None),
        "server_slot": getattr(args, "slot", None),
    }
    return {key: value for key, value in values.items() if value is not None}


def remote_bench_options(settings: Settings, n_ctx: int) -> dict[str, Any]:
    """What ``bench context`` passes to ``context.run`` to play on the server the settings
    name: a backend opener per cache mode and the model's name; nothing for local play."""
    if not settings.server_url:
        return {}
    from game.backends.remote import open_remote

    def opener(cache_mode: CacheMode) -> Any:
        return open_remote(settings, cache_mode=cache_mode, n_ctx=n_ctx)

    probe = open_remote(settings)
    return {"opener": opener, "model_name": f"{probe.name} @ {probe.url}"}
