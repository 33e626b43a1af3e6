"""Files in other programs' formats, written from their public specs (for the import tests)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

BOOK_V2 = {
    "name": "Glade lore",
    "description": "What the glade holds",
    "scan_depth": 3,
    "token_budget": 500,
    "recursive_scanning": False,
    "extensions": {},
    "entries": [
        {
            "keys": ["glade", "clearing"],
            "content": "The glade is warded against {{user}}'s enemies.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 10,
            "case_sensitive": False,
            "name": "glade",
            "priority": 10,
            "id": 1,
            "comment": "",
            "selective": True,
            "secondary_keys": ["ward"],
            "constant": False,
            "position": "before_char",
        },
        {
            "keys": ["spring"],
            "content": "The spring heals.",
            "extensions": {},
            "enabled": False,
            "insertion_order": 20,
        },
        {"keys": [], "content": "Keyless and not constant.", "extensions": {}, "enabled": True,
         "insertion_order": 0},
        {"keys": [], "content": "Always: the forest is old.", "extensions": {}, "enabled": True,
         "insertion_order": 5, "constant": True},
    ],
}  # fmt: skip


def v2_card(**data: Any) -> dict[str, Any]:
    """A Tavern card V2 with every field of the spec."""
    fields = {
        "name": "Seraphina",
        "description": "{{char}} is a forest guardian who watches over {{user}}.",
        "personality": "kind, protective",
        "scenario": "{{user}} wakes in {{char}}'s glade.",
        "first_mes": "*{{char}} smiles at {{user}}.* You're awake at last.",
        "mes_example": "<START>\n{{user}}: Hello?\n{{char}}: Rest now.",
        "creator_notes": "A gentle guardian.\nBest with long replies.",
        "system_prompt": "Write {{char}}'s part in vivid prose.",
        "post_history_instructions": "Stay in character as {{char}}.",
        "alternate_greetings": ["*{{char}} is gone; a note lies on {{user}}'s chest.*"],
        "character_book": BOOK_V2,
        "tags": ["fantasy", "guardian"],
        "creator": "example-author",
        "character_version": "1.2",
        "extensions": {"talkativeness": "0.5", "depth_prompt": {"prompt": "x", "depth": 4}},
    }
    fields.update(data)
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": fields}


def v3_card(**data: Any) -> dict[str, Any]:
    """A card V3: V2's fields, the new ones, and a lorebook with decorators."""
    card = v2_card(**data)
    card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
    book = json.loads(json.dumps(BOOK_V2))
    book["entries"] += [
        {"keys": ["moon"], "content": "@@activate\nThe moon is always full here.",
         "extensions": {}, "enabled": True, "insertion_order": 1, "use_regex": False},
        {"keys": ["sun"], "content": "@@dont_activate\nNo sun.", "extensions": {},
         "enabled": True, "insertion_order": 1, "use_regex": False},
        {"keys": ["river"], "content": "@@depth 4\n@@additional_keys water\nThe river is cold.",
         "extensions": {}, "enabled": True, "insertion_order": 1, "use_regex": False},
        {"keys": ["/dra?gon/i"], "content": "Regex only.", "extensions": {}, "enabled": True,
         "insertion_order": 1, "use_regex": True},
    ]  # fmt: skip
    card["data"].update(
        {
            "name": data.get("name", "Seraphina V3"),
            "character_book": book,
            "nickname": "Sera",
            "creator_notes_multilingual": {"en": "A gentle guardian."},
            "source": ["https://example.invalid/seraphina"],
            "group_only_greetings": ["*{{char}} greets the group.*"],
            "creation_date": 1700000000,
            "modification_date": 1700000001,
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        }
    )
    return card


def b64(card: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(card).encode()).decode()


def png_bytes(chunks: dict[str, str], size: tuple[int, int] = (8, 8), z: bool = False) -> bytes:
    """A PNG with text chunks (tEXt; zTXt with ``z``)."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value, zip=z)
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def write_png_card(path: Path, **chunks: dict[str, Any]) -> Path:
    path.write_bytes(png_bytes({name: b64(card) for name, card in chunks.items()}))
    return path


def write_charx(path: Path, card: dict[str, Any], extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", json.dumps(card))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


SILLYTAVERN_WI = {
    "entries": {
        "0": {"uid": 0, "key": ["tower", "spire"], "keysecondary": ["night"], "comment": "Tower",
              "content": "The tower has no door.", "constant": False, "selective": True,
              "selectiveLogic": 0, "order": 100, "position": 0, "disable": False,
              "probability": 100, "useProbability": True, "depth": 4, "group": ""},
        "1": {"uid": 1, "key": ["bell"], "keysecondary": [], "comment": "", "content":
              "The bell rings thirteen.", "constant": False, "selective": False, "order": 50,
              "position": 4, "disable": True, "probability": 40, "useProbability": True,
              "depth": 2, "group": "bells"},
        "2": {"uid": 2, "key": [], "keysecondary": [], "comment": "always", "content":
              "It always rains.", "constant": True, "order": 10, "position": 0,
              "disable": False},
        "3": {"uid": 3, "key": [""], "content": "Empty keys.", "order": 1},
    }
}  # fmt: skip

NOVELAI = {
    "lorebookVersion": 5,
    "entries": [
        {"text": "Ashgrove is a mining town.", "contextConfig": {"prefix": "", "suffix": "\n",
         "tokenBudget": 2048, "reservedTokens": 0, "budgetPriority": 400,
         "trimDirection": "trimBottom", "insertionType": "newline",
         "maximumTrimType": "sentence", "insertionPosition": -1},
         "lastUpdatedAt": 1, "displayName": "Ashgrove", "id": "a", "keys": ["Ashgrove"],
         "searchRange": 1000, "enabled": True, "forceActivation": False, "keyRelative": False,
         "nonStoryActivatable": False, "category": "", "loreBiasGroups": []},
        {"text": "The mine is flooded.", "contextConfig": {"budgetPriority": -200,
         "insertionPosition": -1}, "displayName": "Mine", "keys": ["mine", "/sha?ft/"],
         "enabled": True, "forceActivation": True, "searchRange": 5000},
        {"text": "Off.", "displayName": "Off", "keys": ["off"], "enabled": False},
    ],
    "settings": {"orderByKeyLocations": False},
    "categories": [],
}  # fmt: skip

AI_DUNGEON = [
    {"keys": "Kaelen, captain", "value": "Kaelen captains the Gull.", "type": "character",
     "title": "Kaelen", "description": "Author notes here"},
    {"keys": "Gull", "entry": "The Gull is a leaking sloop.", "type": "location"},
]  # fmt: skip

KOBOLD_WI = [
    {"key": "lantern,lamp", "keysecondary": "", "keyanti": "", "content": "The lantern is blue.",
     "comment": "", "folder": None, "selective": False, "constant": False, "probability": 100,
     "wigroup": "", "widisabled": False},
    {"key": "crypt", "keysecondary": "night", "keyanti": "day", "content": "The crypt opens.",
     "comment": "", "selective": True, "constant": False, "probability": 100,
     "widisabled": False},
]  # fmt: skip

KOBOLD_STORY = {
    "gamestarted": True,
    "prompt": "The ship lurched as {{user}} woke below deck.",
    "memory": "A sea story. The ship is the Gull.",
    "authorsnote": "Keep it tense.",
    "anotetemplate": "[Author's note: <|>]",
    "actions": [" A bell rang above.", " Someone shouted."],
    "actions_metadata": {},
    "worldinfo": KOBOLD_WI,
    "wiinsertlocation": 0,
    "savedsettings": {"opmode": 2},
}
