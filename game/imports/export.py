"""A scenario as a Tavern character card V2 (JSON, or a PNG with a ``chara`` chunk).

Every field of the card format is written: from the scenario's ``character`` where it has one,
from its setting and player otherwise, and from ``character.card`` (what an import kept) for
the fields the engine does not use. The character's and player's names become ``{{char}}`` and
``{{user}}`` again. The engine's own fields (options, opening, intro options ...) travel in
``extensions.metharme_adventure``, which an import reads back.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from game.imports.cards import EXTENSION
from game.scenario import Scenario


def _macros(text: str, char: str, user: str | None) -> str:
    text = re.sub(rf"(?<!\w){re.escape(char)}(?!\w)", "{{char}}", text)
    if user:
        text = re.sub(rf"(?<!\w){re.escape(user)}(?!\w)", "{{user}}", text)
    return text


def scenario_card(scenario: Scenario) -> dict[str, Any]:
    """The V2 card of a scenario."""
    character = scenario.character
    kept: dict[str, Any] = dict(character.card) if character else {}
    name = character.name if character else scenario.title
    user = scenario.player_name

    def m(text: str | None) -> str:
        return _macros(text or "", name, user)

    book_fields = kept.get("character_book") if isinstance(kept.get("character_book"), dict) else {}
    book_fields = dict(book_fields)
    kept_entries = book_fields.pop("entries_kept", None)
    extras = {
        (item.get("text"), item.get("priority")): item.get("fields") or {}
        for item in (kept_entries if isinstance(kept_entries, list) else [])
        if isinstance(item, dict)
    }
    entries = []
    for number, entry in enumerate(scenario.lore):
        # An entry the author left as imported gets back the card fields lore has no place for.
        extra = extras.get((entry.text, entry.priority), {})
        entries.append(
            {
                "keys": list(entry.keys),
                "content": m(entry.text),
                "extensions": {},
                "enabled": entry.enabled,
                "insertion_order": entry.priority,
                "constant": entry.constant,
                "selective": bool(entry.secondary_keys),
                "secondary_keys": list(entry.secondary_keys),
                "id": number,
                **(extra if isinstance(extra, dict) else {}),
            }
        )
    ours = {
        "id": scenario.id,
        "title": scenario.title,
        "description": scenario.description,
        "opening": scenario.opening,
        "choices": scenario.choices,
        "choice_mode": scenario.choice_mode,
        "lore_budget": scenario.lore_budget,
        "intro_choices": list(scenario.intro.choices) if scenario.intro else [],
        "summary_budget": scenario.summary_budget,
        **({"memory": scenario.memory} if scenario.memory else {}),
        **({"authors_note": scenario.authors_note} if scenario.authors_note else {}),
    }
    extensions = dict(kept.get("extensions") or {})
    extensions[EXTENSION] = ours
    data = {
        "name": name,
        "description": m(character.description if character else scenario.setting),
        "personality": m(character.personality if character else None),
        "scenario": m(character.scenario if character else scenario.player),
        "first_mes": m(scenario.intro.text if scenario.intro else None),
        "mes_example": m(character.example_dialogue if character else None),
        "creator_notes": kept.get("creator_notes", scenario.description),
        "system_prompt": m(scenario.system_prompt),
        "post_history_instructions": m(character.post_history if character else None),
        "alternate_greetings": list(kept.get("alternate_greetings") or []),
        "tags": list(scenario.tags),
        "creator": scenario.author or "",
        "character_version": kept.get("character_version", ""),
        "extensions": extensions,
    }
    if entries or book_fields:
        book = {"extensions": {}, **book_fields, "entries": entries}
        data["character_book"] = book
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def card_png(card: dict[str, Any], title: str) -> bytes:
    """A PNG (a plain 400x600 picture with the title) carrying the card in a ``chara`` chunk."""
    from PIL import Image, ImageDraw, PngImagePlugin

    image = Image.new("RGB", (400, 600), (40, 44, 52))
    ImageDraw.Draw(image).text((20, 20), title[:40], fill=(230, 230, 230))
    info = PngImagePlugin.PngInfo()
    encoded = base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8"))
    info.add_text("chara", encoded.decode("ascii"))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_card(scenario: Scenario, out: Path, *, force: bool = False) -> Path:
    """Write ``scenario`` as a V2 card to ``out`` (``.png`` or ``.json``).

    Raises:
        FileExistsError: when ``out`` exists and ``force`` is not given.
        ValueError: for another suffix.
    """
    if out.suffix.lower() not in (".png", ".json"):
        raise ValueError(f"{out}: the card file must end in .png or .json")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists (--force overwrites it)")
    card = scenario_card(scenario)
    if out.suffix.lower() == ".png":
        data = card_png(card, scenario.title)
    else:
        data = (json.dumps(card, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    write_atomic(out, data)
    return out
