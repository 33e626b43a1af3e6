"""KoboldAI Lite stories and scenarios (its saved JSON) into a scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from game.imports import lorebooks
from game.imports.common import Report, clean, short, slug, text_of

STORY_KEYS = ("memory", "authorsnote", "worldinfo", "gamestarted", "actions", "opmode")
INTRO_LIMIT = 8000


def is_story(data: Any) -> bool:
    """Whether parsed JSON is a KoboldAI Lite story or scenario."""
    return isinstance(data, dict) and "prompt" in data and any(k in data for k in STORY_KEYS)


def story_scenario(
    data: dict[str, Any], path: Path, report: Report, player_name: str
) -> dict[str, Any]:
    """Scenario data: the prompt (and the story's actions) as the intro, memory and author's
    note in the system prompt, world info as lore."""
    names = {"char": "the narrator", "user": player_name}
    title = short(text_of(data.get("title")) or path.stem, 200)
    scenario: dict[str, Any] = {
        "id": slug(title, "story"),
        "title": title,
        "description": short(text_of(data.get("desc")), 300) or "Imported from KoboldAI Lite.",
        "player_name": player_name,
    }
    memory = clean(data.get("memory"), "memory", report, limit=15_000, names=names)
    note = clean(data.get("authorsnote"), "authorsnote", report, limit=4000, names=names)
    lead = memory or (
        f"This is an interactive story: {title}. Continue it from where it stands, in the "
        f"same style; the player is {player_name}."
    )
    report.map("memory -> system_prompt" if memory else "memory: empty; a plain lead is written")
    if note:
        lead += f"\n\nAuthor's note: {note}"
        report.drop("authorsnote: put at the end of the system prompt (no depth insertion here)")
    scenario["system_prompt"] = lead
    story = text_of(data.get("prompt"))
    actions = data.get("actions")
    if isinstance(actions, list):
        story += "".join(a for a in actions if isinstance(a, str))
        if actions:
            report.map(f"actions: {len(actions)} story actions appended to the intro")
    story = clean(story, "prompt", report, limit=10**7, names=names)
    if len(story) > INTRO_LIMIT:
        report.drop(f"prompt: the story's first {len(story) - INTRO_LIMIT} characters left out")
        story = story[-INTRO_LIMIT:].lstrip()
    if story:
        scenario["intro"] = {"text": story}
        report.map("prompt -> intro (the player types the first action)")
    for key in ("anotetemplate", "savedsettings", "extrastopseq", "wiinsertlocation"):
        if data.get(key):
            report.drop(f"{key}: Lite's own setting, not imported")
    info = data.get("worldinfo")
    if isinstance(info, list) and info:
        raw = lorebooks.kobold_world_info(info)
        scenario["lore"] = lorebooks.to_lore(raw, report, "worldinfo", names)
    return scenario
