"""Where scenarios come from: the packs of every source, and a scenario file named directly."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from game.config import PROJECT_ROOT, ConfigError
from game.packs import SCENARIO_SUFFIXES, Catalog, Source, discover, packs_in
from game.scenario import Scenario, load_scenario

DEFAULT_SCENARIO = "haunted-house"


def builtin_packs_dir() -> Path:
    """The built-in packs: ``scenarios/`` in a checkout, bundled data in a wheel."""
    checkout = PROJECT_ROOT / "scenarios"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "_scenarios"


def user_packs_dir() -> Path:
    """Packs the player installed (``$XDG_DATA_HOME/metharme-adventure/packs``)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "metharme-adventure" / "packs"


def pack_sources(extra: Sequence[Path] = ()) -> list[tuple[Source, Path]]:
    """Every pack to load, highest precedence first: ``--pack`` paths, the player's packs
    folder, then the built-in packs."""
    sources: list[tuple[Source, Path]] = [("command line", path) for path in extra]
    sources += [("user", path) for path in packs_in(user_packs_dir())]
    sources += [("builtin", path) for path in packs_in(builtin_packs_dir())]
    return sources


def load_catalog(extra: Sequence[Path] = ()) -> Catalog:
    """All packs of every source (see :func:`pack_sources`)."""
    return discover(pack_sources(extra))


def builtin_catalog() -> Catalog:
    """The built-in packs alone (what the benchmarks play)."""
    return discover([("builtin", path) for path in packs_in(builtin_packs_dir())])


@dataclass(frozen=True)
class ScenarioEntry:
    """A scenario as the game offers it: with the pack it came from."""

    scenario: Scenario
    path: str
    pack_id: str
    pack_title: str


def entries(catalog: Catalog) -> list[ScenarioEntry]:
    """Every scenario of the catalog, sorted by pack and title."""
    found = [
        ScenarioEntry(item.scenario, f"{pack.location}/{item.path}", pack.id, pack.manifest.title)
        for pack, item in catalog.entries()
    ]
    return sorted(found, key=lambda entry: (entry.pack_title, entry.scenario.title))


def find_entry(ref: str | None, catalog: Catalog) -> ScenarioEntry:
    """The scenario a player named: ``pack/scenario``, a bare id, or a scenario file.

    Raises:
        ConfigError: when nothing (or more than one scenario) answers to ``ref``.
        YamlLoadError: when a file was named and it is not a valid scenario.
    """
    ref = ref or DEFAULT_SCENARIO
    path = Path(ref).expanduser()
    if path.suffix in SCENARIO_SUFFIXES or _is_file(path):
        scenario = load_scenario(path)
        return ScenarioEntry(scenario, str(path), "file", path.name)
    try:
        pack, item = catalog.find(ref)
    except LookupError as exc:
        raise ConfigError(str(exc)) from None
    return ScenarioEntry(
        item.scenario, f"{pack.location}/{item.path}", pack.id, pack.manifest.title
    )


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the OS refuses (too long): it is then a scenario
    reference, and not finding it is the one-line error."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
