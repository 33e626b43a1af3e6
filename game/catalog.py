"""Find scenarios: the built-in ones in ``scenarios/``, or a file named on the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from game.config import PROJECT_ROOT, ConfigError
from game.scenario import Scenario, load_scenario

SCENARIO_SUFFIXES = (".yaml", ".yml")


def builtin_scenarios_dir() -> Path:
    """The built-in scenario folder: ``scenarios/`` in a checkout, bundled data in a wheel."""
    checkout = PROJECT_ROOT / "scenarios"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "_scenarios"


def scenario_files(folder: Path) -> list[Path]:
    """Scenario files below ``folder``, sorted (pack manifests are not scenarios)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix in SCENARIO_SUFFIXES and path.is_file() and path.stem != "pack"
    )


def builtin_scenarios() -> dict[str, tuple[Scenario, Path]]:
    """Every built-in scenario by id."""
    found: dict[str, tuple[Scenario, Path]] = {}
    for path in scenario_files(builtin_scenarios_dir()):
        scenario = load_scenario(path)
        found[scenario.id] = (scenario, path)
    return found


DEFAULT_SCENARIO = "haunted-house"


def find_scenario(ref: str | None) -> Scenario:
    """The scenario a player named: a file path, or a built-in id; None for the default.

    Raises:
        ConfigError: when no scenario has that id.
        YamlLoadError: when the file is not a valid scenario.
    """
    ref = ref or DEFAULT_SCENARIO
    path = Path(ref).expanduser()
    if path.suffix in SCENARIO_SUFFIXES or path.exists():
        return load_scenario(path)
    scenarios = builtin_scenarios()
    if ref not in scenarios:
        known = ", ".join(sorted(scenarios)) or "none"
        raise ConfigError(f"no scenario with id {ref!r} (built-in: {known})")
    return scenarios[ref][0]


@dataclass(frozen=True)
class ScenarioEntry:
    """A scenario as the start screen lists it: with the pack it came from."""

    scenario: Scenario
    path: Path
    pack_id: str
    pack_title: str


def builtin_entries() -> list[ScenarioEntry]:
    """The built-in scenarios, each with its pack (its folder under ``scenarios/``)."""
    root = builtin_scenarios_dir()
    entries = []
    for scenario, path in builtin_scenarios().values():
        pack = path.parent.name if path.parent != root else "builtin"
        entries.append(ScenarioEntry(scenario, path, pack, pack.replace("-", " ").title()))
    return sorted(entries, key=lambda entry: (entry.pack_id, entry.scenario.title))
