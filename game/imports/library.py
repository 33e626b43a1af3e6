"""Imports the start screen offers: files dropped into the packs folder, and a typed path.

Domain code (no Textual): the screen shows the notices these return and adds the new scenarios.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from game.catalog import ScenarioEntry, entries, load_catalog, user_packs_dir
from game.imports.bounded import ImportFailed
from game.imports.sources import DEFAULT_PLAYER_NAME
from game.imports.writer import import_files

PICKUP_SUFFIXES = (".png", ".json", ".charx", ".lorebook")
PICKUP_STATE = ".imported.json"


def pickup(packs_dir: Path, player_name: str = DEFAULT_PLAYER_NAME) -> list[str]:
    """Import the files dropped into the packs folder since last time; one notice a file.

    Each file is tried once (its name, size and time are remembered in ``.imported.json``), so
    a file that cannot be imported is reported once, not at every start.
    """
    if not packs_dir.is_dir():
        return []
    state_path = packs_dir / PICKUP_STATE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        state = state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        state = {}
    notices: list[str] = []
    for path in sorted(packs_dir.iterdir()):
        hidden = path.name.startswith(".")
        if hidden or not path.is_file() or path.suffix.lower() not in PICKUP_SUFFIXES:
            continue
        info = path.stat()
        stamp = [info.st_size, info.st_mtime_ns]
        if state.get(path.name) == stamp:
            continue
        state[path.name] = stamp
        try:
            result = import_files([path], packs_dir=packs_dir, player_name=player_name)
        except ImportFailed as exc:
            notices.append(f"Could not import {path.name}: {exc}")
            continue
        count = len(result.scenario_ids)
        notices.append(f"Imported {path.name}: pack {result.pack_id!r}, {count} scenario(s)")
    if notices:
        tmp = state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, state_path)
        except OSError as exc:
            notices.append(f"Could not remember the imported files: {exc}")
    return notices


def import_path(text: str, packs_dir: Path | None = None) -> str | None:
    """Import the file a player typed (into a new pack in the packs folder) and say how it
    went; None when ``text`` does not name a file (it is a filter, then)."""
    path = Path(text.strip()).expanduser()
    if not text.strip() or not path.is_file():
        return None
    try:
        result = import_files([path], packs_dir=packs_dir or user_packs_dir())
    except ImportFailed as exc:
        return f"Could not import {path.name}: {exc}"
    return f"Imported {path.name}: pack {result.pack_id!r}, {len(result.scenario_ids)} scenario(s)"


def with_new_scenarios(
    known: Sequence[ScenarioEntry], extra_packs: Sequence[Path] = ()
) -> list[ScenarioEntry]:
    """``known`` and the scenarios of every pack found now that it does not have yet."""
    have = {(entry.pack_id, entry.scenario.id) for entry in known}
    fresh = [
        e for e in entries(load_catalog(extra_packs)) if (e.pack_id, e.scenario.id) not in have
    ]
    return [*known, *fresh]
