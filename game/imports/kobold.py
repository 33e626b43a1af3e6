"""KoboldAI Lite stories and scenarios (its saved JSON) into a scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from game.imports import lorebooks
from game.imports.common import Report, clean, short, slug, text_of

STORY_KEYS = ("memory", "authorsnote", "worldinfo", "gamestarted", "actions", "opmode")
INTRO_LIMIT = 8000
# What a scenario's memory and author's note may hold (see game.scenario.Scenario).
MEMORY_LIMIT = 4000
NOTE_LIMIT = 1000


def is_story(data: Any) -> bool:
    """Whether parsed JSON is a KoboldAI Lite story or scenario."""
    return isinstance(data, dict) and "prompt" in data and any(k in data for k in STORY_KEYS)


def story_scenario(
    data: dict[str, Any], path: Path, report: Report, player_name: str
) -> dict[str, Any]:
    """Scenario data: the prompt (and the story's actions) as the intro, memory and author's
    note as the scenario's, world info as lore."""
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
    lead = (
        f"This is an interactive story: {title}. Continue it from where it stands, in the "
        f"same style; the player is {player_name}."
    )
    # Lite's memory and author's note are the game's own (memory pinned at the top of the
    # context, the note a little before the end); text too long for those fields goes into
    # the system prompt instead.
    if len(memory) > MEMORY_LIMIT:
        lead = memory
        report.map(f"memory -> system_prompt (longer than the {MEMORY_LIMIT} a memory may have)")
    elif memory:
        scenario["memory"] = memory
        report.map("memory -> memory (pinned after the system prompt)")
    if len(note) > NOTE_LIMIT:
        lead += f"\n\nAuthor's note: {note}"
        report.drop(f"authorsnote: longer than {NOTE_LIMIT} characters, put in the system prompt")
    elif note:
        scenario["authors_note"] = note
        report.map("authorsnote -> authors_note (placed before each action)")
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
