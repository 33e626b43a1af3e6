"""Text that is safe to show on a terminal and to write anywhere.

Pack authors, save files and players choose the text the game prints. Raw, an escape sequence
in a scenario title could recolour or clear the screen, set the window title (OSC), or forge a
line of output (a newline in a key forges a second ``validate`` problem, in a save name a second
row of ``saves``). And Python strings can hold lone surrogates (``\\ud800`` in a JSON file, or
the ``surrogateescape`` of a player's binary bytes on stdin) that cannot be encoded as UTF-8,
so a print or a save would crash on them.

- :func:`valid_text` replaces lone surrogates with U+FFFD: call it on anything that will be
  written or encoded.
- :func:`for_terminal` shows control characters visibly (``\\x1b`` as ``^[``, C1 controls and
  DEL as ``<U+009B>``), keeping newlines and tabs unless ``one_line`` is set.
- :func:`clean_input` is for a line the player typed: surrogates replaced, control characters
  dropped.
"""

from __future__ import annotations

import re
from typing import TextIO

REPLACEMENT = "\ufffd"

_SURROGATES = re.compile("[\ud800-\udfff]")
# C0 controls except tab and newline, DEL, C1 controls; and the Unicode line and paragraph
# separators and bidi overrides, which reorder or break what a terminal shows.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROLS_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8."""
    return _SURROGATES.sub(REPLACEMENT, text)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code == 0x0A:
        return "\\n"
    if code == 0x09:
        return "\\t"
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation: ESC is ^[
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def for_terminal(text: str, *, one_line: bool = False) -> str:
    """``text`` safe to print: valid UTF-8, control characters shown visibly.

    Args:
        one_line: Show newlines and tabs visibly too (for names, keys, titles and any line
            that must stay one line).
    """
    pattern = _CONTROLS_ONE_LINE if one_line else _CONTROLS
    return pattern.sub(_visible, valid_text(text))


def clean_input(text: str) -> str:
    """A line a player typed: lone surrogates replaced, control characters (escape sequences'
    introducers included) dropped, tabs made spaces."""
    text = valid_text(text).replace("\t", " ")
    return _CONTROLS_ONE_LINE.sub("", text)


def valid_data(value: object) -> object:
    """A JSON-like value (dicts, lists, strings) with :func:`valid_text` applied to every string,
    keys included; iterative, so depth cannot exhaust the stack."""
    if isinstance(value, str):
        return valid_text(value)
    if not isinstance(value, dict | list):
        return value
    root: list[object] = [value]
    stack: list[tuple[object, object, object]] = [(root, 0, value)]
    while stack:
        parent, key, item = stack.pop()
        if isinstance(item, str):
            parent[key] = valid_text(item)  # type: ignore[index]
        elif isinstance(item, dict):
            copy: dict[object, object] = {}
            for name, child in item.items():
                copy[valid_text(name) if isinstance(name, str) else name] = child
            parent[key] = copy  # type: ignore[index]
            stack.extend((copy, name, child) for name, child in copy.items())
        elif isinstance(item, list):
            items = list(item)
            parent[key] = items  # type: ignore[index]
            stack.extend((items, index, child) for index, child in enumerate(items))
    return root[0]


class SafeWriter:
    """A text stream that passes everything written through :func:`for_terminal` (newlines and
    tabs kept): for a front end printing text that models, packs and saves chose."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(for_terminal(text))

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)
