"""Bounded reads of stranger-supplied files: size, JSON depth, zip entries, PNG text chunks.

Every import goes through here before any format is interpreted. A file that breaks a limit
fails with :class:`ImportFailed` (one line naming the file and what is wrong); nothing is
written anywhere by these functions.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import stat
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

MAX_JSON_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 32 * 1024 * 1024  # a PNG or CHARX with its pixels and assets
MAX_DEPTH = 64
MAX_IMAGE_PIXELS = 32 * 1024 * 1024
# A card's text chunk holds base64 JSON: a few hundred KB for a big card with a lorebook.
MAX_TEXT_CHUNK = 8 * 1024 * 1024
MAX_TEXT_MEMORY = 16 * 1024 * 1024
MAX_ZIP_ENTRIES = 1000
MAX_COMPRESSION_RATIO = 100
CARD_CHUNKS = ("ccv3", "chara")


class ImportFailed(Exception):
    """A file cannot be imported; the message is one line for the player."""

    def __init__(self, where: str | Path, message: str):
        super().__init__(f"{where}: {message}")


def read_limited(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, refusing files over ``limit`` (checked before reading)."""
    try:
        if not path.is_file():
            raise ImportFailed(path, "not a file")
        size = path.stat().st_size
        if size > limit:
            raise ImportFailed(path, f"the file is {size} bytes; the limit is {limit}")
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise ImportFailed(path, exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise ImportFailed(path, f"the file is over {limit} bytes")
    return data


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (strings ignored)."""
    depth = deepest = 0
    for char in _STRING.sub(b"", data):
        if char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in b"]}":
            depth -= 1
    return deepest


def parse_json(data: bytes, where: str | Path) -> Any:
    """JSON from untrusted bytes: bounded in size and nesting, UTF-8 only."""
    if len(data) > MAX_JSON_BYTES:
        raise ImportFailed(where, f"the JSON is {len(data)} bytes; the limit is {MAX_JSON_BYTES}")
    if json_depth(data) > MAX_DEPTH:
        raise ImportFailed(where, f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(where, f"not UTF-8 text (offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(where, f"not valid JSON: line {exc.lineno}: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:
        raise ImportFailed(where, f"not valid JSON: {exc}") from None


def decode_base64_json(text: str, where: str) -> Any:
    """A card chunk: base64 of UTF-8 JSON."""
    if len(text) > MAX_TEXT_CHUNK:
        raise ImportFailed(where, f"the card text is over {MAX_TEXT_CHUNK} bytes")
    compact = "".join(text.split())
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImportFailed(where, "the card text is not valid base64") from None
    return parse_json(data, where)


def png_card_chunks(data: bytes, where: str | Path) -> dict[str, str]:
    """The card text chunks (``ccv3``, ``chara``) of a PNG, read by Pillow within limits.

    Pillow refuses images of more than 2 x ``MAX_IMAGE_PIXELS`` pixels and text chunks (also
    compressed ones, after decompression) over ``MAX_TEXT_CHUNK``; a warning about a large image
    is treated as an error here. The pixels are decoded only to reach chunks after the image
    data, within those limits.
    """
    from PIL import Image, PngImagePlugin

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    PngImagePlugin.MAX_TEXT_CHUNK = MAX_TEXT_CHUNK
    PngImagePlugin.MAX_TEXT_MEMORY = MAX_TEXT_MEMORY
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                chunks = dict(getattr(image, "text", {}) or {})
                if not any(name in chunks for name in CARD_CHUNKS):
                    image.load()
                    chunks = dict(getattr(image, "text", {}) or {})
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImportFailed(where, f"the image is too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImportFailed(where, f"not a readable PNG: {message}") from None
    return {name: value for name, value in chunks.items() if name in CARD_CHUNKS}


def safe_member(name: str) -> str | None:
    """The normalised path of a zip entry, or None when it could point outside its folder."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("..", "") for part in parts):
        return None
    return "/".join(parts)


def zip_entry(data: bytes, wanted: str, where: str | Path) -> tuple[bytes, list[str]]:
    """Read one entry of a zip (from memory) after checking every entry; also the others' names.

    Refuses zips with entries that escape (``..``, absolute paths, drive letters), symbolic
    links, too many entries, or an entry that claims to expand more than
    ``MAX_COMPRESSION_RATIO`` times; the entry read is bounded by ``MAX_JSON_BYTES`` whatever
    its header says.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFailed(where, f"not a readable zip file: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_ENTRIES:
            raise ImportFailed(where, f"the zip has {len(members)} entries; the limit is 1000")
        for member in members:
            if safe_member(member.filename) is None:
                raise ImportFailed(where, f"entry {member.filename!r} points outside the zip")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise ImportFailed(where, f"entry {member.filename!r} is a symbolic link")
        found = [m for m in members if safe_member(m.filename) == wanted]
        if not found:
            raise ImportFailed(where, f"the zip has no {wanted}")
        member = found[0]
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > MAX_JSON_BYTES or (
            ratio > MAX_COMPRESSION_RATIO and member.file_size > 64 * 1024
        ):
            raise ImportFailed(where, f"{wanted} expands to {member.file_size} bytes (a zip bomb?)")
        try:
            with archive.open(member) as stream:
                content = stream.read(MAX_JSON_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ImportFailed(where, f"{wanted} cannot be read: {exc}") from None
        if len(content) > MAX_JSON_BYTES:
            raise ImportFailed(where, f"{wanted} is larger than {MAX_JSON_BYTES} bytes")
        others = [m.filename for m in members if m is not member and not m.is_dir()]
        return content, others
