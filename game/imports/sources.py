"""Which format a file is, and what it holds: scenarios, lore, and the report of the mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from game.imports import cards, kobold, lorebooks
from game.imports.bounded import MAX_JSON_BYTES, ImportFailed, parse_json, read_limited
from game.imports.common import Report, clean, text_of

DEFAULT_PLAYER_NAME = "Traveler"


@dataclass
class Imported:
    """What one file holds, ready for the pack writer.

    Attributes:
        source: The file.
        kind: Its format, in words.
        scenarios: Scenario data (validated by the writer).
        lore: Lore for the whole pack (a standalone lorebook).
        author: Who made it, when the file says.
        report: What was mapped, and what was dropped and why.
    """

    source: Path
    kind: str
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    lore: list[dict[str, Any]] = field(default_factory=list)
    author: str | None = None
    report: Report = field(default_factory=Report)


def read_source(path: Path, player_name: str = DEFAULT_PLAYER_NAME) -> Imported:
    """Read and map one file of any supported format.

    Raises:
        ImportFailed: one line, when the file is unreadable, too big, hostile, or of no known
            format.
    """
    raw = read_limited(path)
    report = Report()
    card = cards.read_card_file(path, raw)
    if card is None:
        if len(raw) > MAX_JSON_BYTES:
            raise ImportFailed(
                path, f"the file is {len(raw)} bytes; JSON may have {MAX_JSON_BYTES}"
            )
        data = parse_json(raw, path)
        if cards.is_card(data):
            card = data
    if card is not None:
        spec, fields = cards.card_fields(card, path)
        scenarios = cards.card_scenarios(card, path, report, player_name)
        names = {"char": text_of(fields.get("name")), "user": player_name}
        author = clean(fields.get("creator"), "creator", Report(), limit=200, names=names) or None
        return Imported(path, f"character card ({spec})", scenarios, [], author, report)
    if kobold.is_story(data):
        scenario = kobold.story_scenario(data, path, report, player_name)
        return Imported(path, "KoboldAI Lite story", [scenario], [], None, report)
    kind = lorebooks.detect(data)
    if kind is not None:
        where = "lorebook"
        lore = lorebooks.to_lore(lorebooks.read(data, kind), report, where)
        return Imported(path, kind, [], lore, None, report)
    raise ImportFailed(
        path,
        "not a format this game imports (character card V1/V2/V3, SillyTavern World Info, "
        "NovelAI lorebook, AI Dungeon story cards, KoboldAI Lite story or world info)",
    )
