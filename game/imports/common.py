"""What every importer shares: the report of what was mapped and dropped, and text cleaning."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from game.scenario import ROLE_MARKERS

_BREAK = "\u200b"  # the zero-width space prompt.neutralize puts inside a marker
MACROS = {
    "char": re.compile(r"\{\{char\}\}|<bot>", re.IGNORECASE),
    "user": re.compile(r"\{\{user\}\}|<user>", re.IGNORECASE),
}
OTHER_MACRO = re.compile(r"\{\{[^{}\n]{1,40}\}\}")


@dataclass
class Report:
    """What an import mapped where, and what it could not express (never silently dropped)."""

    mapped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def map(self, line: str) -> None:
        self.mapped.append(line)

    def drop(self, line: str) -> None:
        self.dropped.append(line)

    def extend(self, other: Report, prefix: str = "") -> None:
        self.mapped += [prefix + line for line in other.mapped]
        self.dropped += [prefix + line for line in other.dropped]


def text_of(value: Any) -> str:
    """A field's text: strings as they are, anything else (null, numbers, lists) as empty."""
    return value.strip() if isinstance(value, str) else ""


def clean(value: Any, where: str, report: Report, *, limit: int, names: dict[str, str]) -> str:
    """A stranger's text made safe for a scenario field.

    ``{{char}}``/``{{user}}`` (and ``<BOT>``/``<USER>``) become ``names``; role markers of every
    prompt format are neutralised (reported); text over ``limit`` characters is cut (reported).
    """
    text = text_of(value)
    for macro, pattern in MACROS.items():
        text = pattern.sub(lambda _m, name=names[macro]: name, text)
    for marker in ROLE_MARKERS:
        if marker in text:
            report.drop(f"{where}: role marker {marker!r} neutralised (it could forge turns)")
            text = text.replace(marker, marker[0] + _BREAK + marker[1:])
    others = sorted(set(OTHER_MACRO.findall(text)))
    if others:
        report.drop(f"{where}: macros {', '.join(others)} kept as plain text")
    if len(text) > limit:
        report.drop(f"{where}: cut from {len(text)} to {limit} characters")
        text = text[:limit].rstrip()
    return text


def slug(text: str, fallback: str = "imported") -> str:
    """An id (``[a-z0-9][a-z0-9_-]*``, at most 48 characters) made from a name."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    made = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-_")[:48].strip("-_")
    return made or fallback


def short(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
