"""The loading boundary: bounded, safe reads of files that strangers wrote.

Everything the game reads from disk (scenarios, packs, saves, the config file) comes through
:func:`read_regular`, and every JSON document through :func:`parse_json`:

- Only regular files are read. The file is opened with ``O_NONBLOCK`` (so a named pipe cannot
  block the open) and checked with ``fstat`` on the open descriptor (so nothing can swap the file
  between the check and the read); a FIFO, a device such as ``/dev/zero``, a socket or a folder is
  refused with one line.
- The size on disk is never trusted: at most ``max_bytes + 1`` bytes are read, so a file that
  grows, or lies about its size, still cannot make the game read more than its bound.
- JSON is parsed with limits on nesting depth and on the digits of an integer (Python refuses
  integers over 4,300 digits with a ValueError; a deep document raises RecursionError), both
  turned into :class:`BoundaryError`.

The errors are one line each (:class:`BoundaryError`); callers prefix the file name.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

# How deep a document may nest (mappings and lists). The game's own documents nest about six
# levels; 64 leaves room for anything legitimate and stays far below Python's recursion limit.
MAX_DEPTH = 64
# The longest integer literal accepted; Python's own limit is 4,300 digits.
MAX_INT_DIGITS = 100


class BoundaryError(Exception):
    """A file or a document that is refused at the boundary; ``str()`` is one line without the
    file name (the caller knows it); ``line`` is the 1-based line at fault, where known."""

    def __init__(self, message: str, line: int = 1):
        super().__init__(message)
        self.line = line


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path | str, *, follow_links: bool = True) -> int:
    """Open ``path`` for reading if it is a regular file; return the descriptor.

    Args:
        follow_links: When False, a symbolic link itself is refused (``O_NOFOLLOW``).

    Raises:
        BoundaryError: one line saying why the file cannot be read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BoundaryError("a symbolic link (loop, or not allowed here)") from None
        raise BoundaryError(_os_message(exc)) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise BoundaryError(f"{_kind(mode)}, not a file")
        # Regular files never block; reads go back to blocking semantics for clarity.
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _os_message(exc: OSError) -> str:
    return exc.strerror or str(exc)


def read_descriptor(descriptor: int, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` bytes from an open descriptor.

    Raises:
        BoundaryError: when there is more (the bound is checked on the read, not on st_size).
    """
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        try:
            chunk = os.read(descriptor, min(1 << 20, max_bytes + 1 - total))
        except OSError as exc:
            raise BoundaryError(f"cannot read: {_os_message(exc)}") from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise BoundaryError(f"the file is over {max_bytes} bytes; the limit is {max_bytes}")
    return b"".join(chunks)


def read_regular(path: Path | str, max_bytes: int, *, follow_links: bool = True) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes.

    Raises:
        BoundaryError: when it is missing, unreadable, not a regular file, or too large.
    """
    descriptor = open_regular(path, follow_links=follow_links)
    try:
        return read_descriptor(descriptor, max_bytes)
    finally:
        os.close(descriptor)


def decode_utf8(raw: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped).

    Raises:
        BoundaryError: naming the line and offset of the first bad byte.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (bad byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise BoundaryError(message, line) from None


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise BoundaryError(f"a number of {digits} digits (the limit is {MAX_INT_DIGITS})")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise BoundaryError(f"{name} is not valid JSON")


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and mappings (iteratively: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def parse_json(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON document, with nesting and integer size bounded; NaN and Infinity refused.

    Raises:
        BoundaryError: for anything that is not bounded, valid JSON (one line, with the line and
            column of a syntax error).
    """
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BoundaryError(
            f"not valid JSON, truncated or damaged ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})",
            exc.lineno,
        ) from None
    except RecursionError:
        raise BoundaryError(f"nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # a float too long to convert, and the like
        raise BoundaryError(f"not valid JSON ({str(exc).splitlines()[0]})") from None
    if json_depth(value) > max_depth:
        raise BoundaryError(f"nested more than {max_depth} levels deep")
    return value
