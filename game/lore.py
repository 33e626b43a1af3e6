"""Lore the model sees only when it matters: keyword-triggered entries within a token budget.

Pure functions. An entry fires when one of its keywords appears, as a whole word and ignoring
case, in the recent text (the player's action and the last reply). Fired entries go in highest
priority first while they fit the budget. Constant entries are not chosen here: they are part
of the pinned system prompt (see ``scenario.render_system_prompt``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from game.scenario import LoreEntry


def _mentions(text: str, keyword: str) -> bool:
    pattern = r"(?<!\w)" + re.escape(keyword.casefold()) + r"(?!\w)"
    return re.search(pattern, text) is not None


def triggered(entries: Sequence[LoreEntry], recent: str) -> list[LoreEntry]:
    """The enabled, non-constant entries whose keywords ``recent`` mentions (and one of their
    secondary keywords, when they have any), highest priority first (ties keep the order they
    were written in)."""
    text = recent.casefold()
    fired = [
        entry
        for entry in entries
        if entry.enabled
        and not entry.constant
        and any(_mentions(text, key) for key in entry.keys)
        and (not entry.secondary_keys or any(_mentions(text, k) for k in entry.secondary_keys))
    ]
    return sorted(fired, key=lambda entry: -entry.priority)


def select(
    entries: Sequence[LoreEntry], recent: str, budget: int, count: Callable[[str], int]
) -> list[LoreEntry]:
    """The triggered entries that fit in ``budget`` tokens (as ``count`` measures each text),
    taken highest priority first; an entry too big for what is left is skipped, not cut."""
    chosen: list[LoreEntry] = []
    left = budget
    for entry in triggered(entries, recent):
        size = count(entry.text)
        if size <= left:
            chosen.append(entry)
            left -= size
    return chosen


def lore_text(entries: Sequence[LoreEntry]) -> str:
    """The text of a lore segment."""
    return "\n\n".join(entry.text for entry in entries)
