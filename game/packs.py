"""Scenario packs: folders (or zips of one) of scenarios that other people wrote.

A pack is a ``pack.yaml`` manifest and scenario files beside it (in subfolders too). Packs come
from strangers, so loading one never runs code (safe YAML only), never reads or writes outside
the pack (no ``..``, no absolute paths, no links out of it; zips are read without extracting,
their entries checked first), and is bounded in files, bytes and YAML alias expansion. Every
problem found is reported at once, as ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from game.boundary import BoundaryError, decode_utf8

# The limits live with the file reading; they are part of this module's interface too.
from game.packfiles import (  # noqa: F401
    MANIFEST,
    MAX_COMPRESSION_RATIO,
    MAX_ENTRIES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    SCENARIO_SUFFIXES,
    PackFiles,
    read_pack_files,
    reason,
)
from game.scenario import (
    ID_PATTERN,
    LoreEntry,
    SafeText,
    Scenario,
    ShortText,
    scenario_from_document,
    validation_problems,
)
from game.yamlsource import Problem, YamlLoadError, parse_yaml

log = logging.getLogger(__name__)

PACK_FORMAT = 1
# Problems listed per pack in a catalog (``validate`` lists every one): a pack of 10,000 bad
# files must not bury the rest of the listing.
MAX_LISTED_PROBLEMS = 20

Source = Literal["builtin", "user", "command line"]


class PackManifest(BaseModel):
    """``pack.yaml``: who made the pack, and lore its scenarios share."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    title: ShortText
    author: ShortText
    version: Annotated[str, Field(min_length=1, max_length=40)]
    description: Annotated[SafeText, Field(min_length=1, max_length=2000)]
    license: Annotated[str, Field(min_length=1, max_length=100)]
    format: Literal[1] = PACK_FORMAT
    lore: list[LoreEntry] = Field(default_factory=list, max_length=500)


@dataclass(frozen=True)
class PackScenario:
    """A scenario of a pack, with the pack's shared lore already merged into its own."""

    scenario: Scenario
    path: str


@dataclass
class Pack:
    """A loaded pack.

    Attributes:
        manifest: The manifest.
        location: The folder or zip it was read from.
        source: Where it was found.
        scenarios: Its valid scenarios, by id.
        problems: Everything wrong with it (invalid files are left out of ``scenarios``).
    """

    manifest: PackManifest
    location: Path
    source: Source
    scenarios: dict[str, PackScenario] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.manifest.id


class PackError(Exception):
    """A pack could not be loaded at all; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


# -- loading -------------------------------------------------------------------------------------


def _decode(location: Path, name: str, data: bytes) -> str:
    try:
        return decode_utf8(data)
    except BoundaryError as exc:
        raise YamlLoadError([Problem(f"{location}/{name}", exc.line, "file", str(exc))]) from None


def _manifest(location: Path, files: PackFiles) -> tuple[PackManifest | None, list[Problem]]:
    """The manifest, or None and why not."""
    name = f"{location}/{MANIFEST}"
    if MANIFEST not in files.files:
        if any(problem.file in (name, str(location)) for problem in files.problems):
            return None, []  # why it could not be read is already among the problems
        return None, [Problem(str(location), 1, MANIFEST, "the pack has no pack.yaml")]
    try:
        document = parse_yaml(_decode(location, MANIFEST, files.files[MANIFEST]), name)
    except YamlLoadError as exc:
        return None, exc.problems
    if not isinstance(document.data, dict):
        return None, [Problem(name, 1, "pack", "the manifest must be a mapping")]
    try:
        return PackManifest.model_validate(document.data), []
    except ValidationError as exc:
        return None, validation_problems(document, exc, top="pack")


def load_pack(location: Path, source: Source = "command line") -> Pack:
    """Load a pack folder or zip, checking every file even when some are wrong.

    Returns:
        The pack with every valid scenario; what is wrong is in ``problems``.

    Raises:
        PackError: with every problem found (the scenarios' too), when the pack has no usable
            manifest or its files cannot be read safely.
    """
    files = read_pack_files(location)
    manifest, manifest_problems = _manifest(location, files)
    problems = [*files.problems, *manifest_problems]
    scenarios: dict[str, PackScenario] = {}
    shared = manifest.lore if manifest else []
    for name in sorted(files.files):
        if PurePosixPath(name).name == MANIFEST:
            continue
        label = f"{location}/{name}"
        try:
            document = parse_yaml(_decode(location, name, files.files[name]), label)
            scenario = scenario_from_document(document)
        except YamlLoadError as exc:
            problems += exc.problems
            continue
        if scenario.id in scenarios:
            first = scenarios[scenario.id].path
            problems.append(Problem(label, 1, "id", f"{scenario.id!r} is also the id of {first}"))
            continue
        merged = scenario.model_copy(update={"lore": [*scenario.lore, *shared]})
        scenarios[scenario.id] = PackScenario(merged, name)
    if manifest is None:
        raise PackError(problems)
    if not scenarios and not problems:
        problems.append(Problem(str(location), 1, "pack", "the pack has no scenarios"))
    return Pack(manifest, location, source, scenarios, problems)


# -- discovery -----------------------------------------------------------------------------------


def is_pack(path: Path) -> bool:
    """Whether ``path`` looks like a pack (a folder with a manifest, or a zip). A manifest that
    is not a regular file (a folder, a FIFO, a dangling link) still makes a pack, so that loading
    says what is wrong with it instead of the pack vanishing."""
    try:
        return (path.is_dir() and os.path.lexists(path / MANIFEST)) or (
            path.suffix == ".zip" and not path.is_dir() and os.path.lexists(path)
        )
    except OSError:  # a name too long, a folder that cannot be searched
        return False


def packs_in(folder: Path) -> Iterator[Path]:
    """The packs directly inside ``folder`` (none, logged, when it cannot be listed)."""
    try:
        if not folder.is_dir():
            return
        children = sorted(folder.iterdir())
    except OSError as exc:
        log.warning("cannot list the packs folder %s: %s", folder, exc)
        return
    for path in children:
        if is_pack(path):
            yield path


@dataclass
class Catalog:
    """Every pack found, and what went wrong finding them."""

    packs: dict[str, Pack] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def entries(self) -> Iterator[tuple[Pack, PackScenario]]:
        for pack in self.packs.values():
            for scenario in pack.scenarios.values():
                yield pack, scenario

    def problems_under(self, paths: Iterable[Path]) -> list[str]:
        """The problems of the packs at ``paths`` (those a player named with ``--pack``)."""
        prefixes = tuple(str(path) for path in paths)
        return [problem for problem in self.problems if prefixes and problem.startswith(prefixes)]

    def find(self, ref: str) -> tuple[Pack, PackScenario]:
        """A scenario addressed as ``pack/scenario``, or by its bare id when that is unique.

        Raises:
            LookupError: with a one-line reason.
        """
        if "/" in ref:
            pack_id, _, scenario_id = ref.partition("/")
            pack = self.packs.get(pack_id)
            if pack is None:
                known = ", ".join(sorted(self.packs)) or "none"
                raise LookupError(f"no pack with id {pack_id!r} (packs: {known})")
            if scenario_id not in pack.scenarios:
                known = ", ".join(sorted(pack.scenarios)) or "none"
                raise LookupError(
                    f"pack {pack_id!r} has no scenario {scenario_id!r} (it has: {known})"
                )
            return pack, pack.scenarios[scenario_id]
        matches = [(pack, s) for pack, s in self.entries() if s.scenario.id == ref]
        if not matches:
            known = (
                ", ".join(sorted(f"{p.id}/{s.scenario.id}" for p, s in self.entries())) or "none"
            )
            raise LookupError(f"no scenario with id {ref!r} (scenarios: {known})")
        if len(matches) > 1:
            where = ", ".join(f"{pack.id}/{ref}" for pack, _ in matches)
            raise LookupError(f"{ref!r} is in several packs: name one of {where}")
        return matches[0]


def _listed(path: Path, problems: list[Problem]) -> list[str]:
    """A pack's problems for a catalog: the first MAX_LISTED_PROBLEMS, then how many more."""
    lines = [str(problem) for problem in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        more = len(problems) - MAX_LISTED_PROBLEMS
        lines.append(f"{path}: {more} more problem(s); `validate {path}` lists them all")
    return lines


def discover(sources: Iterable[tuple[Source, Path]]) -> Catalog:
    """Load the packs of every source, in order of precedence (highest first).

    A pack whose id an earlier pack already has is not merged into it: it is left out and
    reported. So is a pack that cannot be loaded.
    """
    catalog = Catalog()
    for source, path in sources:
        try:
            pack = load_pack(path, source)
        except PackError as exc:
            catalog.problems += _listed(path, exc.problems)
            continue
        except Exception as exc:
            # The last line of defence: one pack, whatever is wrong with it, never takes the
            # catalog (and every command that needs it) down with it.
            log.exception("loading the pack %s failed", path)
            catalog.problems.append(
                str(Problem(str(path), 1, "pack", f"cannot be loaded: {reason(exc)}"))
            )
            continue
        kept = catalog.packs.get(pack.id)
        if kept is not None:
            catalog.problems.append(
                f"{path}: pack id {pack.id!r} is already used by {kept.location} ({kept.source}); "
                "this one is left out"
            )
            continue
        catalog.packs[pack.id] = pack
        catalog.problems += _listed(path, pack.problems)
    return catalog
