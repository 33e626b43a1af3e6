"""Reading the files of a pack, safely: a folder or a zip, within bounds.

A folder is walked without following links to folders (a link loop cannot recurse), a file
link that points out of the pack is refused, every file is read through
:func:`game.boundary.read_regular` (regular files only, bounded by the read), and the walk stops
after ``MAX_ENTRIES`` entries with one problem line. A zip is opened only when it is a regular
file, its entries are all checked before any is read, and an entry that cannot be read (bad
CRC, encrypted, unknown compression, truncated stream) is one problem; the others still load.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from game.boundary import BoundaryError, open_regular, read_regular
from game.yamlsource import MAX_FILE_BYTES, Problem

MANIFEST = "pack.yaml"
MAX_FILES = 200
MAX_TOTAL_BYTES = 8 * 1024 * 1024
# Folder entries looked at in a folder pack (files of any kind and folders), so a pack of
# 10,000 files costs a bounded walk and one problem line.
MAX_ENTRIES = 2000
# A zip entry may not claim to expand more than this many times its compressed size.
MAX_COMPRESSION_RATIO = 100
SCENARIO_SUFFIXES = (".yaml", ".yml")


class PackFiles:
    """The text files of a pack, by their path inside it, within the limits."""

    def __init__(self, location: Path):
        self.location = location
        self.problems: list[Problem] = []
        self.files: dict[str, bytes] = {}
        self.full = False  # MAX_FILES reached: said once, the rest skipped

    def _problem(self, name: str, message: str) -> None:
        self.problems.append(
            Problem(f"{self.location}/{name}" if name else str(self.location), 1, "file", message)
        )

    def _accept(self, name: str, size: int) -> bool:
        if self.full:
            return False
        if len(self.files) >= MAX_FILES:
            self._problem("", f"the pack has more than {MAX_FILES} files; the rest are not read")
            self.full = True
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
    # A nameless entry (zipfile cuts a name at a NUL byte) has no place in the pack either.
    if not parts or any(part in ("..", "") for part in parts):
        return None
    return "/".join(parts)


def _open_zip(location: Path, files: PackFiles) -> zipfile.ZipFile | None:
    """The zip at ``location``, opened only if it is a regular file (a FIFO would block)."""
    try:
        descriptor = open_regular(location)
    except BoundaryError as exc:
        files._problem("", str(exc))
        return None
    stream = os.fdopen(descriptor, "rb")
    try:
        return zipfile.ZipFile(stream)
    # zipfile raises many kinds for a damaged archive (BadZipFile, ValueError, EOFError,
    # struct.error ...): each is one problem line, never a crash.
    except Exception as exc:
        stream.close()
        files._problem("", f"not a readable zip file: {reason(exc)}")
        return None


def reason(exc: BaseException) -> str:
    """An exception as one line: its message and its type (``zlib.error``, ``BadZipFile``)."""
    kind = type(exc).__name__
    if type(exc).__module__ not in ("builtins", "zipfile"):
        kind = f"{type(exc).__module__}.{kind}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{text} ({kind})" if text else kind


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    """A member's bytes, at most MAX_FILE_BYTES + 1 of them, whatever the header claims."""
    if member.flag_bits & 0x1:
        raise ValueError("the entry is encrypted")
    with archive.open(member) as stream:
        return stream.read(MAX_FILE_BYTES + 1)


def _read_zip(location: Path) -> PackFiles:
    files = PackFiles(location)
    archive = _open_zip(location, files)
    if archive is None:
        return files
    with archive:
        members = archive.infolist()
        # Check every entry before reading any.
        unsafe = [m.filename for m in members if _safe_member(m.filename) is None]
        links = [m.filename for m in members if stat.S_ISLNK(m.external_attr >> 16)]
        for name in unsafe[:5]:
            files._problem("", f"entry {name!r} points outside the pack")
        for name in links[:5]:
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
            try:
                # Never trust the declared size: read one byte more than it allows.
                data = _read_member(archive, member)
            # A bad CRC (BadZipFile), an encrypted entry (RuntimeError), an unknown compression
            # method (NotImplementedError), a truncated deflate stream (zlib.error, EOFError):
            # the entry is skipped and said so; the other entries still load.
            except Exception as exc:
                files._problem(name, f"cannot be read from the zip: {reason(exc)}")
                continue
            if len(data) > MAX_FILE_BYTES:
                files._problem(name, f"the file is larger than {MAX_FILE_BYTES} bytes")
                continue
            files.files[name] = data
    return _strip_common_folder(files)


def _strip_common_folder(files: PackFiles) -> PackFiles:
    """A zip of a pack folder holds ``folder/pack.yaml``: read it as the pack's root."""
    if MANIFEST in files.files or not files.files:
        return files
    tops = {name.split("/", 1)[0] for name in files.files}
    if len(tops) == 1 and all("/" in name for name in files.files):
        top = tops.pop() + "/"
        files.files = {name[len(top) :]: data for name, data in files.files.items()}
    return files


def _walk(location: Path, files: PackFiles) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``location`` as (path inside the pack, entry), without following
    links to folders (so a link loop cannot recurse) and stopping after MAX_ENTRIES."""
    seen = 0
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(location / prefix if prefix else location) as scan:
                found = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            files._problem(prefix, f"cannot list the folder: {exc.strerror or exc}")
            continue
        for entry in found:
            seen += 1
            if seen > MAX_ENTRIES:
                files._problem(
                    "", f"the pack has more than {MAX_ENTRIES} entries; the rest are not read"
                )
                return
            name = f"{prefix}/{entry.name}" if prefix else entry.name
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_folder = False
            if is_folder:
                pending.append(name)
            else:
                yield name, entry


def _read_folder(location: Path) -> PackFiles:
    files = PackFiles(location)
    root = os.path.realpath(location)
    if (location / MANIFEST).is_dir():
        files._problem(MANIFEST, "a folder, not a file")
    for name, entry in _walk(location, files):
        if not name.endswith(SCENARIO_SUFFIXES):
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if os.path.commonpath([root, target]) != root:
                files._problem(name, "a symbolic link that points outside the pack")
                continue
        if files.full:
            continue
        try:
            data = read_regular(entry.path, MAX_FILE_BYTES)
        except BoundaryError as exc:
            files._problem(name, str(exc))
            continue
        if files._accept(name, len(data)):
            files.files[name] = data
    return files


def read_pack_files(location: Path) -> PackFiles:
    """The YAML files of a pack folder or zip, checked against the limits and paths."""
    if location.is_dir():
        return _read_folder(location)
    return _read_zip(location)
