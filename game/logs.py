"""Logging: everything to a log file, only what a player needs to the terminal."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path


def state_dir() -> Path:
    """Where the game keeps its log (``$XDG_STATE_HOME/metharme-adventure``)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "metharme-adventure"


def default_log_file() -> Path:
    return state_dir() / "game.log"


def setup_logging(
    *, verbose: bool = False, log_file: Path | None = None, console: bool = True
) -> Path | None:
    """Send all records to a rotating log file, and warnings from the game (never llama.cpp's
    chatter, unless ``verbose``) to stderr; with ``console`` False (the TUI owns the terminal)
    nothing goes to stderr.

    Returns:
        The log file in use, or None when it could not be opened (then stderr gets warnings only).
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if console:
        stderr = logging.StreamHandler()
        stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
        stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        if not verbose:
            stderr.addFilter(lambda record: not record.name.startswith("game.llama_cpp"))
        root.addHandler(stderr)
    path = log_file or default_log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot open log file %s: %s", path, exc)
        return None
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    return path
