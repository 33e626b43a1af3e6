"""The pack writer: imported scenarios and lore become a pack folder that ``validate`` accepts.

Everything is read, mapped and validated first; then the pack is written into a temporary
folder beside the target, loaded back with the pack loader, and only then moved into place
(a new pack by one rename; files added to an existing pack one atomic rename each). A failure
leaves nothing behind, and nothing is written outside the target pack.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from game.errors import first_error
from game.imports.bounded import ImportFailed
from game.imports.common import Report, short, slug
from game.imports.sources import DEFAULT_PLAYER_NAME, Imported, read_source
from game.packs import MANIFEST, PackError, PackManifest, load_pack
from game.scenario import LoreEntry, Scenario

MARK = "# Written by python -m game import"


@dataclass
class ImportResult:
    """A finished import: the pack written and what each file became."""

    pack: Path
    pack_id: str
    scenario_ids: list[str]
    files: list[Imported] = field(default_factory=list)
    report: Report = field(default_factory=Report)


def _dump(data: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return f"{header}\n{body}"


def _validated(item: Imported, data: dict[str, Any]) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ImportFailed(item.source, first_error(exc, "scenario")) from None


def _existing(target: Path) -> tuple[PackManifest | None, set[str], set[str]]:
    """An existing pack's manifest, scenario ids and file names (None when there is none)."""
    if not target.exists():
        return None, set(), set()
    if not (target / MANIFEST).is_file():
        raise ImportFailed(target, "exists and is not a pack folder (no pack.yaml)")
    try:
        pack = load_pack(target)
    except PackError as exc:
        raise ImportFailed(target, f"the pack cannot be loaded: {exc.problems[0]}") from None
    names = {path.name for path in target.iterdir()}
    return pack.manifest, set(pack.scenarios), names


def _unique(wanted: str, taken: set[str], limit: int = 64) -> str:
    made, number = wanted, 2
    while made in taken:
        made = f"{wanted[: limit - 4]}-{number}"
        number += 1
    taken.add(made)
    return made


def _manifest(target: Path, items: list[Imported], lore: list[dict[str, Any]]) -> dict[str, Any]:
    first = items[0]
    title = first.scenarios[0]["title"] if first.scenarios else first.source.stem
    sources = ", ".join(item.source.name for item in items)
    manifest = {
        "id": slug(target.name, "imported")[:64],
        "title": short(str(title), 200),
        "author": short(first.author or "unknown", 200),
        "version": "1.0",
        "description": short(f"Imported from {sources}.", 2000),
        "license": "unknown: see the original files",
        "format": 1,
    }
    if lore:
        manifest["lore"] = lore
    return manifest


def _lore_models(item: Imported) -> list[dict[str, Any]]:
    try:
        return [
            LoreEntry.model_validate(entry).model_dump(mode="json", exclude_defaults=True)
            for entry in item.lore
        ]
    except ValidationError as exc:
        raise ImportFailed(item.source, first_error(exc, "lore")) from None


def import_files(
    paths: Sequence[Path],
    into: Path | None = None,
    *,
    packs_dir: Path,
    player_name: str = DEFAULT_PLAYER_NAME,
) -> ImportResult:
    """Import files into the pack ``into`` (new or one made by import), or a new pack folder in
    ``packs_dir`` named after the first file.

    Raises:
        ImportFailed: one line; nothing was written.
    """
    items = [read_source(path, player_name) for path in paths]
    if into is None:
        base = slug(items[0].scenarios[0]["title"] if items[0].scenarios else paths[0].stem)
        taken = {p.name for p in packs_dir.iterdir()} if packs_dir.is_dir() else set()
        target = packs_dir / _unique(base, taken)
    else:
        target = into
    manifest, ids, names = _existing(target)
    lore = [entry for item in items for entry in _lore_models(item)]
    if not any(item.scenarios for item in items) and manifest is None:
        raise ImportFailed(
            paths[0],
            "a lorebook holds no scenario: import it together with a card or story, or --into "
            "an existing pack",
        )
    report = Report()
    files: dict[str, str] = {}
    scenario_ids: list[str] = []
    for item in items:
        report.map(f"{item.source}: {item.kind}")
        report.extend(item.report, prefix=f"{item.source.name}: ")
        for data in item.scenarios:
            wanted = data["id"]
            data["id"] = _unique(wanted, ids)
            if data["id"] != wanted:
                report.map(f"{item.source.name}: scenario id {wanted!r} taken, so {data['id']!r}")
            scenario = _validated(item, data)
            content = scenario.model_dump(mode="json", exclude_defaults=True)
            name = _unique(f"{scenario.id}.yaml", names, limit=10**6)
            files[name] = _dump(content, f"{MARK} from {item.source.name}")
            scenario_ids.append(scenario.id)
    if lore:
        if manifest is not None:
            text = (target / MANIFEST).read_text(encoding="utf-8")
            if not text.startswith(MARK):
                raise ImportFailed(
                    target,
                    "lore can only be added to a pack made by import (its pack.yaml "
                    "would be rewritten); give a new --into folder",
                )
            data = manifest.model_dump(mode="json", exclude_defaults=True)
            data["lore"] = [*data.get("lore", []), *lore]
            files[MANIFEST] = _dump(data, MARK)
        report.map(f"{len(lore)} lorebook entries -> the pack's lore (shared by its scenarios)")
    if manifest is None:
        files[MANIFEST] = _dump(_manifest(target, items, lore), MARK)
    _write(target, files, new=manifest is None)
    pack_id = manifest.id if manifest else _manifest(target, items, lore)["id"]
    return ImportResult(target, pack_id, scenario_ids, items, report)


def _write(target: Path, files: dict[str, str], *, new: bool) -> None:
    """Write ``files`` into a temporary copy of the pack, check it loads, then move it in."""
    made_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.import-", dir=target.parent))
    done = False
    try:
        work = staging / "pack"
        if new:
            work.mkdir()
        else:
            shutil.copytree(target, work, symlinks=True)
        for name, text in files.items():
            (work / name).write_text(text, encoding="utf-8")
        try:
            pack = load_pack(work)
        except PackError as exc:
            raise ImportFailed(target, f"the pack would not load: {exc.problems[0]}") from None
        fresh = [p for p in pack.problems if any(name in p.file for name in files)]
        if fresh:
            raise ImportFailed(target, f"the pack would not validate: {fresh[0]}")
        if new:
            if target.exists():
                raise ImportFailed(target, "appeared while importing; nothing written")
            os.rename(work, target)
        else:
            for name in files:  # scenarios first, the manifest (if rewritten) last
                if name != MANIFEST:
                    os.replace(work / name, target / name)
            if MANIFEST in files:
                os.replace(work / MANIFEST, target / MANIFEST)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made_parent and not done:
            # The packs folder was made for this import only: leave no trace of it.
            shutil.rmtree(target.parent, ignore_errors=True)
