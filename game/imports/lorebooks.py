"""Lorebooks of other programs into lore entries.

Formats: SillyTavern World Info JSON, NovelAI ``.lorebook``, AI Dungeon story cards, KoboldAI
Lite world info, and the ``character_book`` of a Tavern card (V2, and V3 with its ``@@``
decorators). Keys, secondary keys, constant, order/priority and enabled map onto
:class:`game.scenario.LoreEntry`; what our lore cannot express (insertion depth, probability,
groups, regex or case-sensitive keys ...) is reported, counted per book.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from game.imports.common import Report, clean, text_of

MAX_KEY = 60
MAX_KEYS = 20
MAX_TEXT = 4000
MAX_ENTRIES = 200
REGEX_KEY = re.compile(r"^/.+/[a-z]*$", re.DOTALL)
DEFAULT_NAMES = {"char": "the character", "user": "the player"}


@dataclass
class RawEntry:
    """One entry as a lorebook has it, before it becomes a LoreEntry."""

    keys: list[str]
    text: Any
    secondary: list[str] = field(default_factory=list)
    constant: bool = False
    enabled: bool = True
    order: float | None = None
    label: str = ""
    # What this entry sets that our lore cannot express, as short reasons.
    unsupported: list[str] = field(default_factory=list)
    # Fields of a card's book entry our lore has no place for, kept for export.
    extra: dict[str, Any] = field(default_factory=dict)


def split_keys(value: Any) -> list[str]:
    """Keys given as a list, or as one comma-separated string."""
    if isinstance(value, str):
        return [key.strip() for key in value.split(",") if key.strip()]
    if isinstance(value, list):
        return [key.strip() for key in value if isinstance(key, str) and key.strip()]
    return []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _keys(keys: Iterable[str], skipped: Counter[str]) -> list[str]:
    kept: list[str] = []
    for key in keys:
        if REGEX_KEY.match(key):
            skipped["regular-expression keys dropped (keys here are whole words)"] += 1
        elif len(key) > MAX_KEY:
            skipped[f"keys over {MAX_KEY} characters dropped"] += 1
        elif key.casefold() not in {k.casefold() for k in kept}:
            kept.append(key)
    if len(kept) > MAX_KEYS:
        skipped[f"keys beyond the first {MAX_KEYS} of an entry dropped"] += 1
    return kept[:MAX_KEYS]


def _priorities(orders: list[float | None], report: Report, where: str) -> list[int]:
    """Orders as priorities in -100..100, keeping their ranking (scaled when out of range)."""
    known = [order for order in orders if order is not None]
    if not known:
        return [0] * len(orders)
    low, high = min(known), max(known)
    if low >= -100 and high <= 100:
        return [round(order) if order is not None else 0 for order in orders]
    report.map(f"{where}: order {low:g}..{high:g} scaled to priority -100..100")
    span = (high - low) or 1.0
    return [round((order - low) / span * 200 - 100) if order is not None else 0 for order in orders]


def to_lore(
    raw: list[RawEntry],
    report: Report,
    where: str,
    names: dict[str, str] | None = None,
    extras: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """LoreEntry data for each usable entry; everything left out or changed is reported.

    With ``extras``, each kept entry's ``extra`` fields are appended to it, with the text and
    priority they belong to (so ``export`` can write them back to an unchanged entry)."""
    names = names or DEFAULT_NAMES
    skipped: Counter[str] = Counter()
    if len(raw) > MAX_ENTRIES:
        report.drop(f"{where}: {len(raw) - MAX_ENTRIES} entries beyond the first {MAX_ENTRIES}")
        raw = raw[:MAX_ENTRIES]
    priorities = _priorities([entry.order for entry in raw], report, where)
    lore: list[dict[str, Any]] = []
    for number, (entry, priority) in enumerate(zip(raw, priorities, strict=True), 1):
        label = f"{where} entry {number}" + (f" ({entry.label[:40]})" if entry.label else "")
        text = clean(entry.text, label, report, limit=MAX_TEXT, names=names)
        if not text:
            report.drop(f"{label}: no text, left out")
            continue
        keys = _keys(entry.keys, skipped)
        if not keys and not entry.constant:
            report.drop(f"{label}: no usable keys and not constant (it could never fire), left out")
            continue
        for reason in entry.unsupported:
            skipped[reason] += 1
        item: dict[str, Any] = {"keys": keys, "text": text}
        secondary = _keys(entry.secondary, skipped)
        if secondary:
            item["secondary_keys"] = secondary
        if priority:
            item["priority"] = priority
        if entry.constant:
            item["constant"] = True
        if not entry.enabled:
            item["enabled"] = False
        lore.append(item)
        if extras is not None and entry.extra:
            extras.append({"text": text, "priority": priority, "fields": entry.extra})
    disabled = sum(1 for item in lore if item.get("enabled") is False)
    report.map(
        f"{where}: {len(lore)} of {len(raw)} entries into lore"
        + (f" ({disabled} kept disabled)" if disabled else "")
    )
    for reason, count in sorted(skipped.items()):
        report.drop(f"{where}: {count} x {reason}")
    return lore


# -- the formats ---------------------------------------------------------------------------------


def _st_entry(data: dict[str, Any]) -> RawEntry:
    unsupported = []
    logic = data.get("selectiveLogic", 0)
    secondary = split_keys(data.get("keysecondary"))
    if secondary and data.get("selective", True) and logic not in (0, None):
        unsupported.append("secondary-key logic other than AND ANY read as AND ANY")
    if not data.get("selective", True):
        secondary = []
    if data.get("useProbability", False) and _number(data.get("probability")) not in (None, 100):
        unsupported.append("trigger probability ignored (entries always fire)")
    if data.get("group"):
        unsupported.append("inclusion groups ignored")
    if data.get("caseSensitive"):
        unsupported.append("case-sensitive matching read as any case")
    if data.get("position") not in (None, 0, 1) or data.get("depth") not in (None, 4):
        unsupported.append("insertion position/depth ignored (lore goes before the action)")
    return RawEntry(
        keys=split_keys(data.get("key")),
        secondary=secondary,
        text=data.get("content"),
        constant=bool(data.get("constant")),
        enabled=not data.get("disable", False),
        order=_number(data.get("order")),
        label=text_of(data.get("comment")),
        unsupported=unsupported,
    )


def sillytavern(data: dict[str, Any]) -> list[RawEntry]:
    """SillyTavern World Info: ``{"entries": {"0": {"key": [...], "content": ...}, ...}}``."""
    entries = data["entries"]
    values = entries.values() if isinstance(entries, dict) else entries
    return [_st_entry(entry) for entry in values if isinstance(entry, dict)]


def novelai(data: dict[str, Any]) -> list[RawEntry]:
    """NovelAI ``.lorebook``: ``{"lorebookVersion": N, "entries": [{"text", "keys", ...}]}``."""
    raw = []
    for entry in data.get("entries") or []:
        if not isinstance(entry, dict):
            continue
        unsupported = []
        config = entry.get("contextConfig") if isinstance(entry.get("contextConfig"), dict) else {}
        if entry.get("loreBiasGroups"):
            unsupported.append("phrase bias groups ignored")
        if entry.get("keyRelative") or config.get("insertionPosition") not in (None, -1):
            unsupported.append("insertion position ignored (lore goes before the action)")
        if entry.get("searchRange") not in (None, 1000):
            unsupported.append("search range ignored (the last action and reply are searched)")
        if entry.get("category"):
            unsupported.append("categories ignored")
        raw.append(
            RawEntry(
                keys=split_keys(entry.get("keys")),
                text=entry.get("text"),
                constant=bool(entry.get("forceActivation")),
                enabled=entry.get("enabled", True) is not False,
                order=_number(config.get("budgetPriority")),
                label=text_of(entry.get("displayName")),
                unsupported=unsupported,
            )
        )
    return raw


def ai_dungeon(data: list[Any]) -> list[RawEntry]:
    """AI Dungeon story cards: ``[{"keys": "a, b", "value": ..., "type", "title"}]`` (older
    world info exports say ``entry`` instead of ``value``)."""
    raw = []
    for card in data:
        if not isinstance(card, dict):
            continue
        unsupported = []
        if text_of(card.get("description")):
            unsupported.append("card notes (description) not imported: they never reach the AI")
        text = card.get("value", card.get("entry"))
        raw.append(
            RawEntry(
                keys=split_keys(card.get("keys")),
                text=text,
                label=text_of(card.get("title")),
                unsupported=unsupported,
            )
        )
    return raw


def kobold_world_info(data: list[Any]) -> list[RawEntry]:
    """KoboldAI Lite world info: ``[{"key": "a,b", "keysecondary": ..., "content": ...}]``."""
    raw = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        unsupported = []
        if split_keys(entry.get("keyanti")):
            unsupported.append("anti-keys (keys that block an entry) ignored")
        if _number(entry.get("probability")) not in (None, 100):
            unsupported.append("trigger probability ignored (entries always fire)")
        if entry.get("wigroup"):
            unsupported.append("world info groups ignored")
        raw.append(
            RawEntry(
                keys=split_keys(entry.get("key")),
                secondary=split_keys(entry.get("keysecondary")) if entry.get("selective") else [],
                text=entry.get("content"),
                constant=bool(entry.get("constant")),
                enabled=not entry.get("widisabled", False),
                label=text_of(entry.get("comment")),
                unsupported=unsupported,
            )
        )
    return raw


# V3 decorators (lines at the start of an entry's content): the ones our lore can express.
_DECORATOR = re.compile(r"^@@@?(\w+)\s*(.*)$")


def _decorated(content: Any, entry: RawEntry) -> str:
    """Apply a V3 entry's ``@@decorators`` and return the content without them."""
    lines = text_of(content).splitlines()
    while lines and lines[0].startswith("@@"):
        match = _DECORATOR.match(lines.pop(0).strip())
        if match is None:
            continue
        name, argument = match.groups()
        if name == "activate":
            entry.constant = True
        elif name == "dont_activate":
            entry.enabled = False
        elif name == "additional_keys":
            entry.secondary += split_keys(argument)
        else:
            entry.unsupported.append(f"decorator @@{name} ignored")
    return "\n".join(lines).strip()


ENTRY_KEPT = (
    "id", "name", "comment", "extensions", "insertion_order", "priority", "case_sensitive",
    "position", "use_regex",
)  # fmt: skip


def character_book(book: dict[str, Any]) -> list[RawEntry]:
    """A card's ``character_book`` (V2; V3 adds ``use_regex`` and decorators)."""
    raw = []
    for data in book.get("entries") or []:
        if not isinstance(data, dict):
            continue
        entry = RawEntry(
            keys=split_keys(data.get("keys")),
            secondary=split_keys(data.get("secondary_keys")) if data.get("selective") else [],
            text="",
            constant=bool(data.get("constant")),
            enabled=data.get("enabled", True) is not False,
            order=_number(data.get("insertion_order")),
            label=text_of(data.get("name")) or text_of(data.get("comment")),
        )
        entry.text = _decorated(data.get("content"), entry)
        entry.extra = {key: data[key] for key in ENTRY_KEPT if key in data}
        if data.get("use_regex"):
            entry.unsupported.append("regular-expression entries read as plain keys")
        if data.get("case_sensitive"):
            entry.unsupported.append("case-sensitive matching read as any case")
        if data.get("position") not in (None, "", "before_char"):
            entry.unsupported.append("insertion position ignored (lore goes before the action)")
        raw.append(entry)
    return raw


def detect(data: Any) -> str | None:
    """Which lorebook format ``data`` is, or None."""
    if isinstance(data, dict):
        entries = data.get("entries")
        if "lorebookVersion" in data:
            return "NovelAI lorebook"
        if isinstance(entries, dict):
            return "SillyTavern World Info"
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            first = entries[0]
            if "content" in first and "keys" in first:
                return "character book"
            if "text" in first and "keys" in first:
                return "NovelAI lorebook"
            if "content" in first and "key" in first:
                return "SillyTavern World Info"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        if "content" in first and "key" in first:
            return "KoboldAI Lite world info"
        if "keys" in first and ("value" in first or "entry" in first):
            return "AI Dungeon story cards"
    return None


READERS = {
    "NovelAI lorebook": novelai,
    "SillyTavern World Info": sillytavern,
    "character book": character_book,
    "KoboldAI Lite world info": kobold_world_info,
    "AI Dungeon story cards": ai_dungeon,
}


def read(data: Any, kind: str) -> list[RawEntry]:
    """The entries of a lorebook of ``kind`` (see :func:`detect`)."""
    return READERS[kind](data)  # type: ignore[operator]
