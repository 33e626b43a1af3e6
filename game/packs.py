"""Scenario packs: folders (or zips of one) of scenarios that other people wrote.

A pack is a ``pack.yaml`` manifest and scenario files beside it (in subfolders too). Packs come
from strangers, so loading one never runs code (safe YAML only), never reads or writes outside
the pack (no ``..``, no absolute paths, no links out of it; zips are read without extracting,
their entries checked first), and is bounded in files, bytes and YAML alias expansion. Every
problem found is reported at once, as ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from game.scenario import (
    ID_PATTERN,
    LoreEntry,
    SafeText,
    Scenario,
    ShortText,
    scenario_from_document,
    validation_problems,
)
from game.yamlsource import MAX_FILE_BYTES, Problem, YamlLoadError, parse_yaml

MANIFEST = "pack.yaml"
PACK_FORMAT = 1
MAX_FILES = 200
MAX_TOTAL_BYTES = 8 * 1024 * 1024
# A zip entry may not claim to expand more than this many times its compressed size.
MAX_COMPRESSION_RATIO = 100
SCENARIO_SUFFIXES = (".yaml", ".yml")

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


# -- reading files from a folder or a zip, safely ------------------------------------------------


class _Files:
    """The text files of a pack, by their path inside it, within the limits."""

    def __init__(self, location: Path):
        self.location = location
        self.problems: list[Problem] = []
        self.files: dict[str, bytes] = {}

    def _problem(self, name: str, message: str) -> None:
        self.problems.append(
            Problem(f"{self.location}/{name}" if name else str(self.location), 1, "file", message)
        )

    def _accept(self, name: str, size: int) -> bool:
        if len(self.files) >= MAX_FILES:
            self._problem("", f"the pack has more than {MAX_FILES} files")
            return False
        if size > MAX_FILE_BYTES:
            self._problem(name, f"the file is {size} bytes; the limit is {MAX_FILE_BYTES}")
            return False
        total = sum(map(len, self.files.values())) + size
        if total > MAX_TOTAL_BYTES:
            self._problem(name, f"the pack is over {MAX_TOTAL_BYTES} bytes")
            return False
        return True


def _safe_member(name: str) -> str | None:
    """The normalized path of a zip member, or None when it could point outside the pack."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("..", "") for part in parts):
        return None
    return "/".join(parts)


def _read_zip(location: Path) -> _Files:
    files = _Files(location)
    try:
        archive = zipfile.ZipFile(location)
    except (zipfile.BadZipFile, OSError) as exc:
        files._problem("", f"not a readable zip file: {exc}")
        return files
    with archive:
        members = archive.infolist()
        # Check every entry before reading any.
        unsafe = [m.filename for m in members if _safe_member(m.filename) is None]
        links = [m.filename for m in members if stat.S_ISLNK(m.external_attr >> 16)]
        for name in unsafe:
            files._problem("", f"entry {name!r} points outside the pack")
        for name in links:
            files._problem("", f"entry {name!r} is a symbolic link")
        if unsafe or links:
            return files
        entries = [m for m in members if not m.is_dir()]
        if len(entries) > MAX_FILES:
            files._problem("", f"the pack has {len(entries)} files; the limit is {MAX_FILES}")
            return files
        declared = sum(m.file_size for m in entries)
        if declared > MAX_TOTAL_BYTES:
            files._problem(
                "", f"the pack expands to {declared} bytes; the limit is {MAX_TOTAL_BYTES}"
            )
            return files
        for member in entries:
            name = _safe_member(member.filename)
            assert name is not None
            ratio = member.file_size / max(member.compress_size, 1)
            if ratio > MAX_COMPRESSION_RATIO and member.file_size > 64 * 1024:
                files._problem(name, f"compressed {ratio:.0f} times (a zip bomb?)")
                continue
            if not name.endswith(SCENARIO_SUFFIXES) or not files._accept(name, member.file_size):
                continue
            with archive.open(member) as stream:
                # Never trust the declared size: read one byte more than it allows.
                data = stream.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                files._problem(name, f"the file is larger than {MAX_FILE_BYTES} bytes")
                continue
            files.files[name] = data
    return _strip_common_folder(files)


def _strip_common_folder(files: _Files) -> _Files:
    """A zip of a pack folder holds ``folder/pack.yaml``: read it as the pack's root."""
    if MANIFEST in files.files or not files.files:
        return files
    tops = {name.split("/", 1)[0] for name in files.files}
    if len(tops) == 1 and all("/" in name for name in files.files):
        top = tops.pop() + "/"
        files.files = {name[len(top) :]: data for name, data in files.files.items()}
    return files


def _read_folder(location: Path) -> _Files:
    files = _Files(location)
    root = location.resolve()
    for path in sorted(location.rglob("*")):
        name = path.relative_to(location).as_posix()
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                files._problem(name, "a symbolic link that points outside the pack")
                continue
        if not path.is_file() or not name.endswith(SCENARIO_SUFFIXES):
            continue
        size = path.stat().st_size
        if not files._accept(name, size):
            continue
        files.files[name] = path.read_bytes()
    return files


def read_pack_files(location: Path) -> _Files:
    """The YAML files of a pack folder or zip, checked against the limits and paths."""
    if location.is_dir():
        return _read_folder(location)
    return _read_zip(location)


# -- loading -------------------------------------------------------------------------------------


def _decode(location: Path, name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = Problem(
            f"{location}/{name}", line, "file", f"not UTF-8 text (offset {exc.start})"
        )
        raise YamlLoadError([problem]) from None


def _manifest(location: Path, files: _Files) -> tuple[PackManifest | None, list[Problem]]:
    """The manifest, or None and why not."""
    name = f"{location}/{MANIFEST}"
    if MANIFEST not in files.files:
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
    """Whether ``path`` looks like a pack (a folder with a manifest, or a zip)."""
    return (path.is_dir() and (path / MANIFEST).is_file()) or (
        path.is_file() and path.suffix == ".zip"
    )


def packs_in(folder: Path) -> Iterator[Path]:
    """The packs directly inside ``folder``."""
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
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
            catalog.problems += [str(problem) for problem in exc.problems]
            continue
        kept = catalog.packs.get(pack.id)
        if kept is not None:
            catalog.problems.append(
                f"{path}: pack id {pack.id!r} is already used by {kept.location} ({kept.source}); "
                "this one is left out"
            )
            continue
        catalog.packs[pack.id] = pack
        catalog.problems += [str(problem) for problem in pack.problems]
    return catalog
