"""Tavern character cards (V1, V2 ``chara_card_v2``, V3 ``chara_card_v3``) into scenarios.

Containers: PNG (the ``ccv3`` and ``chara`` text chunks, base64 JSON; V3 wins when both are
there), plain JSON, and CHARX (a zip with ``card.json``). A card is a roleplay character, not an
adventure: its scenario is a ``character`` the model plays, its first message the ``intro``,
each alternate greeting one more scenario, its ``character_book`` lore; the rendered prompt
still ends each reply with options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from game.imports import lorebooks
from game.imports.bounded import (
    CARD_CHUNKS,
    ImportFailed,
    decode_base64_json,
    parse_json,
    png_card_chunks,
    zip_entry,
)
from game.imports.common import Report, clean, short, slug, text_of

SPECS = ("chara_card_v2", "chara_card_v3")
EXTENSION = "metharme_adventure"
LONG = 20_000
# The most an author's note may hold (see game.scenario.Scenario.authors_note).
NOTE_LIMIT = 1000
# Card fields the scenario has no place for: kept in ``character.card`` and written back by
# ``export``, so a card survives a round trip through a pack.
KEPT = (
    "creator_notes",
    "character_version",
    "extensions",
    "alternate_greetings",
    "nickname",
    "creator_notes_multilingual",
    "source",
    "group_only_greetings",
    "creation_date",
    "modification_date",
    "assets",
)
BOOK_KEPT = (
    "name",
    "description",
    "scan_depth",
    "token_budget",
    "recursive_scanning",
    "extensions",
)


def is_card(data: Any) -> bool:
    """Whether parsed JSON is a character card (V2/V3 by ``spec``, V1 by its flat fields)."""
    if not isinstance(data, dict):
        return False
    if data.get("spec") in SPECS:
        return True
    return isinstance(data.get("name"), str) and "first_mes" in data and "description" in data


def card_fields(data: dict[str, Any], where: str | Path) -> tuple[str, dict[str, Any]]:
    """The card's spec and its ``data`` fields (V1 cards hold them at the top level)."""
    spec = data.get("spec")
    if spec in SPECS:
        fields = data.get("data")
        if not isinstance(fields, dict):
            raise ImportFailed(where, f"a {spec} card needs a 'data' object")
        return str(spec), fields
    return "chara_card_v1", data


def read_card_file(path: Path, raw: bytes) -> dict[str, Any] | None:
    """The card JSON of a PNG or CHARX file; None for other files."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        chunks = png_card_chunks(raw, path)
        for name in CARD_CHUNKS:  # ccv3 first: V3 wins when both are there
            if name in chunks:
                card = decode_base64_json(chunks[name], f"{path}: {name} chunk")
                if not is_card(card):
                    raise ImportFailed(path, f"the {name} chunk is not a character card")
                return card
        raise ImportFailed(path, "a PNG without a character card (no chara or ccv3 chunk)")
    if raw.startswith(b"PK\x03\x04") and path.suffix.lower() in (".charx", ".zip"):
        content, _others = zip_entry(raw, "card.json", path)
        card = parse_json(content, f"{path}: card.json")
        if not is_card(card):
            raise ImportFailed(path, "card.json is not a character card")
        return card
    return None


def _intro_choices(name: str) -> list[str]:
    return [f"Greet {name}.", "Look around.", f"Ask {name} what is going on."]


def _ours(kept: dict[str, Any], report: Report) -> dict[str, Any]:
    """This engine's own fields, from a card it exported (``extensions.metharme_adventure``)."""
    extensions = kept.get("extensions")
    if not isinstance(extensions, dict) or not isinstance(extensions.get(EXTENSION), dict):
        return {}
    kept["extensions"] = {k: v for k, v in extensions.items() if k != EXTENSION}
    ours = extensions[EXTENSION]
    report.map(f"extensions.{EXTENSION}: this game's own fields, read back")
    valid = {
        "id": str, "title": str, "description": str, "opening": str,
        "choices": int, "choice_mode": str, "lore_budget": int, "intro_choices": list,
        "memory": str, "authors_note": str, "summary_budget": int,
    }  # fmt: skip
    return {k: v for k, v in ours.items() if k in valid and isinstance(v, valid[k])}


def _depth_prompt(data: dict[str, Any], report: Report, names: dict[str, str]) -> str:
    """SillyTavern's character's note (``extensions.depth_prompt``), as the author's note: it
    is placed before the player's action (depth 0), whatever depth the card asks for."""
    extensions = data.get("extensions")
    depth_prompt = extensions.get("depth_prompt") if isinstance(extensions, dict) else None
    if not isinstance(depth_prompt, dict):
        return ""
    text = clean(depth_prompt.get("prompt"), "depth_prompt", report, limit=NOTE_LIMIT, names=names)
    if text:
        depth = depth_prompt.get("depth")
        report.map(
            "extensions.depth_prompt -> authors_note (placed before each action"
            + (f"; the card's depth {depth} is not kept)" if depth not in (None, 0) else ")")
        )
    return text


def card_scenarios(
    card: dict[str, Any], where: str | Path, report: Report, player_name: str
) -> list[dict[str, Any]]:
    """Scenario data for a card: one for its first message, one per alternate greeting."""
    spec, data = card_fields(card, where)
    raw_name = text_of(data.get("name"))
    if not raw_name:
        raise ImportFailed(where, "the card has no name")
    names = {"char": raw_name, "user": player_name}
    name = clean(raw_name, "name", report, limit=200, names=names)
    report.map(f"{spec} card {name!r}: a character scenario, the model plays {name}")

    def field(key: str, label: str, limit: int = LONG) -> str:
        return clean(data.get(key), key, report, limit=limit, names=names)

    character: dict[str, Any] = {"name": name}
    for key, ours in [
        ("description", "description"),
        ("personality", "personality"),
        ("scenario", "scenario"),
        ("mes_example", "example_dialogue"),
        ("post_history_instructions", "post_history"),
    ]:
        text = field(key, ours)
        if text:
            character[ours] = text
            report.map(f"{key} -> character.{ours}")
    kept = {key: data[key] for key in KEPT if key in data}
    book = data.get("character_book")
    if isinstance(book, dict):
        kept["character_book"] = {key: book[key] for key in BOOK_KEPT if key in book}
    kept["spec"] = spec
    character["card"] = kept

    scenario: dict[str, Any] = {
        "title": name,
        "description": short(text_of(data.get("creator_notes")), 300) or f"A roleplay with {name}.",
        "player_name": player_name,
        "character": character,
    }
    report.map(f"{{{{user}}}} -> {player_name!r} (player_name; --player-name changes it)")
    system_prompt = text_of(data.get("system_prompt"))
    if "{{original}}" in system_prompt:
        report.drop("system_prompt: {{original}} removed (there is no other system prompt here)")
        system_prompt = system_prompt.replace("{{original}}", "").strip()
    if system_prompt:
        scenario["system_prompt"] = clean(
            system_prompt, "system_prompt", report, limit=LONG, names=names
        )
        report.map("system_prompt -> system_prompt")
    creator = clean(data.get("creator"), "creator", report, limit=200, names=names)
    if creator:
        scenario["author"] = creator
    tags = [short(tag, 30) for tag in lorebooks.split_keys(data.get("tags"))][:12]
    if tags:
        scenario["tags"] = tags
    if isinstance(book, dict):
        raw = lorebooks.character_book(book)
        extras: list[dict[str, Any]] = []
        scenario["lore"] = lorebooks.to_lore(raw, report, "character_book", names, extras)
        if extras:
            kept["character_book"]["entries_kept"] = extras
    note = _depth_prompt(data, report, names)
    if note:
        scenario["authors_note"] = note
    if data.get("group_only_greetings"):
        count = len(data["group_only_greetings"])
        report.drop(f"group_only_greetings: {count} kept for export, not played (no group chats)")
    if data.get("assets"):
        report.drop("assets: kept for export, not shown (the game has no images)")

    ours = _ours(kept, report)
    scenario.update({k: ours[k] for k in ("title", "description", "opening") if k in ours})
    own = ("choices", "choice_mode", "lore_budget", "memory", "authors_note", "summary_budget")
    scenario.update({k: ours[k] for k in own if k in ours})
    greetings = [data.get("first_mes")]
    alternates = data.get("alternate_greetings")
    if isinstance(alternates, list):
        greetings += alternates
    base = ours.get("id") or slug(name, "character")
    intro_choices = ours.get("intro_choices") or _intro_choices(name)
    scenarios = []
    for number, greeting in enumerate(greetings, 1):
        label = "first_mes" if number == 1 else f"alternate_greetings[{number - 2}]"
        text = clean(greeting, label, report, limit=8000, names=names)
        one = dict(scenario, id=base if number == 1 else f"{base}-{number}")
        if number > 1:
            one["title"] = short(f"{name} (greeting {number})", 200)
            # Exported, this scenario's card opens with this greeting; the others (the first
            # message among them) stay its alternates.
            others = [g for i, g in enumerate(greetings) if i != number - 1 and isinstance(g, str)]
            card = dict(kept, alternate_greetings=others)
            one["character"] = dict(character, card=card)
        if text:
            one["intro"] = {"text": text, "choices": intro_choices}
            report.map(f"{label} -> intro of scenario {one['id']!r} (with written options)")
        elif number == 1:
            report.drop("first_mes: empty, so the model writes the first reply")
        else:
            report.drop(f"{label}: empty, left out")
            continue
        scenarios.append(one)
    return scenarios
