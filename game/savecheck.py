"""The loading boundary of save files: bounded reading, strict checks, names, and who wrote last.

Saves are shared between players and edited by hand, so a save is checked as strictly as a
scenario before anything uses it (see :func:`game.saves.load`):

- read through :mod:`game.boundary` (a regular file, at most ``max_bytes``, JSON nested at most
  64 levels, integers of at most 100 digits), lone surrogates (``\\ud800``) replaced by U+FFFD;
- the turns alternate ``user``, ``model``, ... and end with a model turn (so they cannot be
  saved back scrambled), and so do the undone turns;
- role markers of every prompt format in any turn, and in the memory, the author's note and the
  story-so-far summaries, are neutralised exactly as a player's typed text is
  (:func:`game.prompt.neutralize`), so a shared save cannot forge turns; the memory's length
  limits count a neutralised marker as written (:func:`written_length`);
- the prompt format is a known one, checked here, before any model loads.

It also makes file names from save names (Unicode letters kept), and records the identity of a
save file as it was read or written (:class:`FileSignature`), so that a second writer to one save
is detected instead of silently overwriting the first.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from game.boundary import BoundaryError, decode_utf8, open_regular, parse_json, read_descriptor
from game.prompt import FORMATS, neutralize
from game.textsafety import valid_data

# A file name's bytes (without the suffix): far below the 255 bytes most file systems allow,
# with room for ``.json.bak`` and the temporary file's prefix and suffix.
MAX_FILENAME_BYTES = 120
MAX_FILENAME_CHARS = 64


@dataclass(frozen=True)
class FileSignature:
    """Which version of a file this is. Every save is written to a new file renamed into place,
    so another writer's save changes the inode, and the size or modification time with it."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, result: os.stat_result) -> FileSignature:
        return cls(result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns)

    @classmethod
    def of_path(cls, path: Path) -> FileSignature | None:
        """The signature of the file at ``path`` now, or None when there is none."""
        try:
            return cls.of(os.stat(path))
        except OSError:
            return None


def read_save_document(path: Path, max_bytes: int) -> tuple[Any, FileSignature]:
    """The JSON value of a save file, with strings made valid, and the file's signature.

    Raises:
        BoundaryError: one line (without the file name) saying what is wrong.
    """
    descriptor = open_regular(path)
    try:
        signature = FileSignature.of(os.fstat(descriptor))
        raw = read_descriptor(descriptor, max_bytes)
    finally:
        os.close(descriptor)
    text = decode_utf8(raw)
    if not text.strip():
        raise BoundaryError("the file is empty")
    return valid_data(parse_json(text)), signature


def turn_order_problem(roles: Sequence[str], where: str) -> str | None:
    """Why a list of turn roles is not ``user, model, user, model, ...``, or None."""
    for index, role in enumerate(roles):
        expected = "user" if index % 2 == 0 else "model"
        if role != expected:
            return (
                f"{where}.{index}.role: turns must alternate user and model, "
                f"but turn {index + 1} is {role!r}"
            )
    if len(roles) % 2:
        return f"{where}: the last turn is the player's; a save ends with the model's reply"
    return None


def neutralize_all(text: str) -> str:
    """``text`` with the role markers of every prompt format made harmless, the way a player's
    typed text is (the game may go on in a format other than the save's)."""
    for fmt in FORMATS.values():
        text = neutralize(text, fmt)
    return text


# Each role marker of every format, and the form :func:`neutralize_all` breaks it into.
_BROKEN_MARKERS = tuple(
    (neutralize_all(marker), marker) for fmt in FORMATS.values() for marker in fmt.markers
)


def written_length(text: str) -> int:
    """Characters of ``text`` as its writer wrote it: the break :func:`neutralize_all` put
    into each role marker is not counted. A text at its length limit that held a marker is
    longer once loaded (neutralised); measured this way it still fits when saved again."""
    for broken, marker in _BROKEN_MARKERS:
        text = text.replace(broken, marker)
    return len(text)


def format_problem(name: str) -> str | None:
    """Why ``name`` is not a known prompt format, or None."""
    if name.strip().lower() in FORMATS:
        return None
    known = ", ".join(sorted(FORMATS))
    return f"prompt_format: unknown prompt format {name!r} (known: {known})"


def safe_filename(name: str) -> str:
    """A file name (without suffix) made from a player's save name: letters (of any script),
    digits, ``-`` and ``_`` only, so no separators, no ``..``, no hidden files; at most
    MAX_FILENAME_CHARS characters and MAX_FILENAME_BYTES bytes of UTF-8; never empty."""
    text = unicodedata.normalize("NFC", name.strip())
    slug = re.sub(r"[^\w-]+", "-", text).strip("-_.").lower()
    encoded = slug[:MAX_FILENAME_CHARS].encode("utf-8")[:MAX_FILENAME_BYTES]
    # Cut on a character boundary: drop a partial character at the end.
    slug = encoded.decode("utf-8", "ignore").rstrip("-_")
    return slug or "save"
