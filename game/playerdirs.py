"""Save folders of browser players: one per player name, one per browser session, or shared.

Plain Python (no Textual): ``python -m game serve`` decides the policy, each tab process applies
it through these functions, and the tests check them with hostile names.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Literal

from game.saves import SaveNameError, check_save_name

SavesPer = Literal["player", "session", "shared"]
SAVES_PER: tuple[SavesPer, ...] = ("player", "session", "shared")

# A player's folder name: ASCII letters, digits, - and _, so that no name can point outside the
# host's folder ("..", "/", "~" and NUL all become "-" or vanish), at most 64 characters.
MAX_FOLDER_CHARS = 64
_NOT_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def player_folder_name(name: str) -> str:
    """The folder name for the player ``name``: its letters and digits, lowercased, with
    everything else turned into ``-``. "Alice" and "alice " are the same player.

    Raises:
        SaveNameError: when the name is empty, too long, holds control characters, or has no
            ASCII letter or digit (two such names would otherwise share a folder).
    """
    cleaned = check_save_name(name)
    slug = _NOT_SAFE.sub("-", cleaned).strip("-_").lower()[:MAX_FOLDER_CHARS].rstrip("-_")
    if not re.search(r"[a-z0-9]", slug):
        raise SaveNameError("a player name needs at least one letter or digit from A-Z or 0-9")
    return slug


def player_folder(base: Path, name: str) -> Path:
    """``base / player_folder_name(name)``: always a direct child of ``base``."""
    return base / player_folder_name(name)


def session_folder(base: Path) -> Path:
    """A new folder name for one browser session under ``base`` (not created here): the time
    and a random part, so that two tabs opened in the same second never share one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return base / f"session-{stamp}-{secrets.token_hex(4)}"
