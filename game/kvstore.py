"""A folder of stored KV caches that outlives the process: the domain side (plain files).

A model's KV cache for a token list is worth minutes on a CPU: reading a 7B model's prompt of a
thousand tokens takes that long. The backend hands this store the state of its cache (opaque
bytes) with the token ids it holds, when a game is quit, saved or switched; when a prompt starts
like a stored token list, the backend loads that state instead of reading the prompt again.

Each entry is one file ``<model key>-<tokens key>.kv``::

    b"MAKV" version(u32) header_length(u32) header(JSON) tokens(int32 LE) payload

The header names the model (its key and file), the token count, the payload's size and CRC-32.
An entry is used only for the model whose key it carries; one that is truncated, fails its
check, or names the same model file with another size or time (a stale entry: the file changed)
is ignored and deleted, with a warning in the log, never a crash. The folder is bounded in
total size: least recently used entries (by file time, touched on each use) go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from game.kvcache import common_prefix

log = logging.getLogger(__name__)

MAGIC = b"MAKV"
VERSION = 1
SUFFIX = ".kv"
_PREAMBLE = struct.Struct("<4sII")
# Bytes of the model file hashed into its identity: GGUF's header and metadata, which name the
# architecture, vocabulary and tensor layout, are at its start.
HEAD_BYTES = 1 << 20
# Headers are small; a bigger one is not ours.
MAX_HEADER = 1 << 16


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/metharme-adventure/kv`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metharme-adventure" / "kv"


@dataclass(frozen=True)
class ModelIdentity:
    """What makes a stored cache valid for a model.

    Attributes:
        file: The model file's resolved path.
        size: Its size in bytes.
        mtime_ns: Its modification time.
        head: SHA-256 of its first megabyte (the GGUF header and metadata).
        layout: What else shapes the cache's bytes (the backend's KV type and attention mode).
    """

    file: str
    size: int
    mtime_ns: int
    head: str
    layout: str = ""

    @property
    def key(self) -> str:
        text = json.dumps([self.file, self.size, self.mtime_ns, self.head, self.layout])
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def model_identity(path: Path, layout: str = "") -> ModelIdentity:
    """The identity of the model file at ``path``."""
    resolved = path.resolve()
    stat = resolved.stat()
    with resolved.open("rb") as handle:
        head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
    return ModelIdentity(str(resolved), stat.st_size, stat.st_mtime_ns, head, layout)


class EntryError(Exception):
    """A stored entry cannot be used (truncated, corrupt, of another version)."""


@dataclass(frozen=True)
class Entry:
    """One stored cache, as its header describes it."""

    path: Path
    model_key: str
    model_file: str
    tokens: tuple[int, ...]
    payload_bytes: int
    payload_crc: int
    payload_offset: int

    @property
    def size(self) -> int:
        return self.payload_offset + self.payload_bytes


@dataclass(frozen=True)
class Match:
    """The stored entry that shares the longest start with a prompt."""

    entry: Entry
    length: int


def _read_exact(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise EntryError(f"truncated ({len(data)} of {size} bytes)")
    return data


def read_entry(path: Path) -> Entry:
    """The header and token ids of the entry at ``path`` (the payload is not read).

    Raises:
        EntryError: when the file is not a complete entry of this version.
        OSError: when it cannot be read.
    """
    with path.open("rb") as handle:
        magic, version, header_length = _PREAMBLE.unpack(_read_exact(handle, _PREAMBLE.size))
        if magic != MAGIC:
            raise EntryError("not a stored KV cache")
        if version != VERSION:
            raise EntryError(f"version {version}, not {VERSION}")
        if header_length > MAX_HEADER:
            raise EntryError("header too long")
        try:
            header = json.loads(_read_exact(handle, header_length))
            model_key = str(header["model"])
            model_file = str(header["model_file"])
            count = int(header["n_tokens"])
            payload_bytes = int(header["payload_bytes"])
            payload_crc = int(header["payload_crc32"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EntryError(f"bad header: {exc}") from None
        if count < 0 or payload_bytes < 0:
            raise EntryError("bad header: negative size")
        raw = _read_exact(handle, 4 * count)
        tokens = struct.unpack(f"<{count}i", raw)
        offset = _PREAMBLE.size + header_length + 4 * count
        expected = offset + payload_bytes
        actual = os.fstat(handle.fileno()).st_size
        if actual != expected:
            raise EntryError(f"{actual} bytes, the header says {expected}")
    return Entry(path, model_key, model_file, tokens, payload_bytes, payload_crc, offset)


class KvStore:
    """The folder of stored caches, bounded to ``max_bytes`` in all."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes

    # -- reading --------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        try:
            return sorted(self.folder.glob(f"*{SUFFIX}"))
        except OSError:
            return []

    def _discard(self, path: Path, why: str) -> None:
        log.warning("stored KV cache %s ignored and deleted: %s", path.name, why)
        with contextlib.suppress(OSError):
            path.unlink()

    def entries(self, model: ModelIdentity) -> list[Entry]:
        """This model's usable entries; corrupt ones, and stale ones (this model file as it was
        before it changed), are deleted on the way."""
        found: list[Entry] = []
        for path in self._files():
            own_name = path.name.startswith(model.key + "-")
            try:
                entry = read_entry(path)
            except (EntryError, OSError) as exc:
                # Another model's entry is checked (and deleted) when that model asks.
                if own_name:
                    self._discard(path, str(exc))
                continue
            if entry.model_key == model.key:
                if own_name:
                    found.append(entry)
                else:
                    self._discard(path, "its name does not match its header")
            elif entry.model_file == model.file:
                self._discard(path, "the model file has changed since it was stored")
            elif own_name:
                self._discard(path, "it was stored for another model")
        return found

    def find(self, model: ModelIdentity, prompt: Sequence[int]) -> Match | None:
        """The entry sharing the longest start with ``prompt`` (the smallest on a tie)."""
        best: Match | None = None
        for entry in self.entries(model):
            length = common_prefix(entry.tokens, prompt)
            if length == 0:
                continue
            if (
                best is None
                or length > best.length
                or (length == best.length and entry.size < best.entry.size)
            ):
                best = Match(entry, length)
        return best

    def load(self, entry: Entry) -> bytearray | None:
        """The entry's payload, checked; None (and the entry deleted) when it fails its check."""
        try:
            with entry.path.open("rb") as handle:
                handle.seek(entry.payload_offset)
                payload = bytearray(entry.payload_bytes)
                if handle.readinto(payload) != entry.payload_bytes:
                    raise EntryError("truncated payload")
        except OSError as exc:
            log.warning("stored KV cache %s cannot be read: %s", entry.path.name, exc)
            return None
        except EntryError as exc:
            self._discard(entry.path, str(exc))
            return None
        if zlib.crc32(payload) != entry.payload_crc:
            self._discard(entry.path, "its contents fail their check")
            return None
        with contextlib.suppress(OSError):
            os.utime(entry.path)  # most recently used
        return payload

    def discard(self, entry: Entry, why: str) -> None:
        """Delete an entry the backend could not use."""
        self._discard(entry.path, why)

    # -- writing --------------------------------------------------------------------------------

    def put(self, model: ModelIdentity, tokens: Sequence[int], payload: bytes | memoryview) -> bool:
        """Store ``payload`` (the cache holding ``tokens``); return whether it was written.

        An entry whose tokens already start with ``tokens`` makes this one needless (it is
        touched instead); entries whose tokens are a start of ``tokens`` are replaced. Then the
        least recently used entries go until the folder fits ``max_bytes``.
        """
        if not tokens:
            return False
        header = {
            "model": model.key,
            "model_file": model.file,
            "n_tokens": len(tokens),
            "payload_bytes": len(payload),
            "payload_crc32": zlib.crc32(payload),
        }
        header_bytes = json.dumps(header).encode()
        size = _PREAMBLE.size + len(header_bytes) + 4 * len(tokens) + len(payload)
        if size > self.max_bytes:
            log.info(
                "KV cache of %d tokens (%d bytes) is over the store's bound", len(tokens), size
            )
            return False
        wanted = tuple(tokens)
        superseded = []
        for entry in self.entries(model):
            if entry.tokens[: len(wanted)] == wanted:
                with contextlib.suppress(OSError):
                    os.utime(entry.path)
                return False
            if wanted[: len(entry.tokens)] == entry.tokens:
                superseded.append(entry.path)
        tokens_key = hashlib.sha256(struct.pack(f"<{len(wanted)}i", *wanted)).hexdigest()[:16]
        path = self.folder / f"{model.key}-{tokens_key}{SUFFIX}"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as handle:
                handle.write(_PREAMBLE.pack(MAGIC, VERSION, len(header_bytes)))
                handle.write(header_bytes)
                handle.write(struct.pack(f"<{len(wanted)}i", *wanted))
                handle.write(payload)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("the KV cache was not stored in %s: %s", self.folder, exc)
            with contextlib.suppress(OSError):
                temporary.unlink()
            return False
        for old in superseded:
            if old != path:
                with contextlib.suppress(OSError):
                    old.unlink()
        self.evict(keep=path)
        log.info("stored the KV cache of %d tokens (%d bytes) in %s", len(wanted), size, path)
        return True

    def evict(self, keep: Path | None = None) -> None:
        """Delete least recently used entries (any model's) until the folder fits."""
        files = []
        for path in self._files():
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                log.info("evicted the stored KV cache %s (least recently used)", path.name)

    def total_bytes(self) -> int:
        """The size of every entry in the folder."""
        total = 0
        for path in self._files():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total


def persist(backend: object) -> bool:
    """Ask ``backend`` to store its KV cache now (a game is quit, saved or switched), when it
    keeps a store; whether anything was written. Front ends call this; it never raises."""
    method = getattr(backend, "persist", None)
    return bool(method()) if callable(method) else False
