"""Generated hostile files: what a hostile pack author or a careless player puts on disk.

Each maker writes one hostile thing into a folder and returns its path. The fuzz suite
(``tests/test_hostile.py``) runs every loader and the command line over them.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.factories import make_scenario

ESC = "\x1b"
ANSI_TITLE = f"{ESC}[31mRed{ESC}[0m {ESC}]0;pwned\x07 title"


def scenario_yaml(**overrides: object) -> str:
    data = make_scenario(**overrides).model_dump(mode="json", exclude_defaults=True)
    return json.dumps(data)  # JSON is YAML


MANIFEST = (
    "id: hostile\ntitle: Hostile\nauthor: X\nversion: '1'\ndescription: A pack.\nlicense: CC0\n"
)


def deep_yaml(levels: int = 10_000) -> str:
    return "a: " + "[" * levels + "]" * levels + "\n"


def deep_json(levels: int = 100_000) -> str:
    return "[" * levels + "]" * levels


def huge_int_yaml() -> str:
    return scenario_yaml().rstrip("}") + ', "choices": ' + "9" * 5000 + "}"


def pack_folder(root: Path, name: str, files: dict[str, str | bytes]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def good_pack_files(pack_id: str = "hostile") -> dict[str, str | bytes]:
    return {"pack.yaml": MANIFEST.replace("hostile", pack_id), "one.yaml": scenario_yaml(id="one")}


def zip_pack(root: Path, name: str, files: dict[str, str | bytes]) -> Path:
    path = root / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, content in files.items():
            archive.writestr(relative, content)
    return path


def zip_bad_crc(root: Path) -> Path:
    path = zip_pack(root, "badcrc.zip", good_pack_files("zcrc"))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("one.yaml")
    # Flip the CRC in both headers (local at header_offset + 14, central found by search).
    crc = struct.pack("<I", info.CRC)
    bad = struct.pack("<I", info.CRC ^ 0xFFFFFFFF)
    data = bytearray(bytes(data).replace(crc, bad))
    path.write_bytes(bytes(data))
    return path


def zip_encrypted(root: Path) -> Path:
    path = zip_pack(root, "encrypted.zip", good_pack_files("zenc"))
    data = bytearray(path.read_bytes())
    # Set the "encrypted" flag bit of every local and central header.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := bytes(data).find(signature, start)) != -1:
            data[start + offset] |= 0x1
            start += 4
    path.write_bytes(bytes(data))
    return path


def zip_unknown_compression(root: Path) -> Path:
    path = zip_pack(root, "method.zip", good_pack_files("zmethod"))
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := bytes(data).find(signature, start)) != -1:
            data[start + offset : start + offset + 2] = struct.pack("<H", 77)
            start += 4
    path.write_bytes(bytes(data))
    return path


def zip_truncated_deflate(root: Path) -> Path:
    """An entry whose deflate stream ends early: its headers say it has half the compressed
    bytes it needs."""
    path = root / "truncated.zip"
    body = ("".join(f"line {n} of a long scenario\n" for n in range(2000))).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pack.yaml", MANIFEST.replace("hostile", "ztrunc"))
        archive.writestr("one.yaml", body)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("one.yaml")
    half = struct.pack("<I", info.compress_size // 2)
    data[info.header_offset + 18 : info.header_offset + 22] = half
    central = bytes(data).find(b"PK\x01\x02", info.header_offset + 30)
    while central != -1:
        name_len = struct.unpack("<H", data[central + 28 : central + 30])[0]
        if data[central + 46 : central + 46 + name_len] == b"one.yaml":
            data[central + 20 : central + 24] = half
        central = bytes(data).find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return path


def zip_damaged_deflate(root: Path) -> Path:
    """An entry whose deflate stream starts with an invalid block type."""
    path = zip_pack(root, "damaged.zip", good_pack_files("zdamaged"))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("one.yaml")
    header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[header + 26 : header + 30])
    data[header + 30 + name_len + extra_len] = 0xFF  # BFINAL=1, BTYPE=11: reserved
    path.write_bytes(bytes(data))
    return path


def zip_garbage(root: Path) -> Path:
    path = root / "garbage.zip"
    path.write_bytes(b"PK\x05\x06" + os.urandom(200))
    return path


def fifo(root: Path, name: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def zero_link(root: Path, name: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/zero")
    return path


def save_document(**overrides: object) -> dict:
    """A minimal valid save document (schema 1)."""
    scenario = make_scenario().model_dump(mode="json")
    document = {
        "schema_version": 1,
        "game_id": "g1",
        "name": "Night",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "scenario": scenario,
        "scenario_id": scenario["id"],
        "scenario_hash": "sha256:0",
        "prompt_format": "metharme",
        "choice_mode": "free",
        "sampling": {},
        "model": {"file": "m.gguf"},
        "turns": [
            {"role": "user", "text": "Start!"},
            {"role": "model", "text": "A hall.\n\n- North\n- South", "choices": ["North", "South"]},
        ],
    }
    document.update(overrides)
    return document


# Every hostile pack a player might find in their packs folder: name -> maker(root) -> path.
HOSTILE_PACKS: dict[str, Callable[[Path], Path]] = {
    "fifo manifest": lambda root: fifo(root / "p-fifo", "pack.yaml").parent,
    "fifo scenario": lambda root: (
        pack_folder(root, "p-fifo2", {"pack.yaml": MANIFEST.replace("hostile", "h2")}),
        fifo(root / "p-fifo2", "two.yaml"),
    )[0],
    "fifo zip": lambda root: fifo(root, "p-fifo.zip"),
    "dev zero manifest": lambda root: zero_link(root / "p-zero", "pack.yaml").parent,
    "dev zero zip": lambda root: zero_link(root, "p-zero.zip"),
    "symlink loop": lambda root: _symlink_loop(root),
    "link out of the pack": lambda root: _link_out(root),
    "deep manifest": lambda root: pack_folder(root, "p-deep", {"pack.yaml": deep_yaml()}),
    "huge int": lambda root: pack_folder(
        root, "p-int", {"pack.yaml": MANIFEST.replace("hostile", "h3"), "x.yaml": huge_int_yaml()}
    ),
    "manifest is a folder": lambda root: _manifest_folder(root),
    "bad crc": zip_bad_crc,
    "encrypted": zip_encrypted,
    "unknown compression": zip_unknown_compression,
    "truncated deflate": zip_truncated_deflate,
    "damaged deflate": zip_damaged_deflate,
    "garbage zip": zip_garbage,
    "ansi title": lambda root: pack_folder(
        root,
        "p-ansi",
        {
            "pack.yaml": MANIFEST.replace("Hostile", json.dumps(ANSI_TITLE)).replace(
                "hostile", "h4"
            ),
            "a.yaml": scenario_yaml(id="ansi", title=ANSI_TITLE),
            "b.yaml": json.dumps({"id": "b", f"x{ESC}[2J\nforged:1: file: fake": 1}),
        },
    ),
    "not utf-8": lambda root: pack_folder(
        root, "p-bytes", {"pack.yaml": b"id: h5\ntitle: \xff\xfe\n", "z.yaml": b"\x00\xff"}
    ),
}


def _symlink_loop(root: Path) -> Path:
    folder = pack_folder(root, "p-loop", {"pack.yaml": MANIFEST.replace("hostile", "h6")})
    (folder / "self").symlink_to(folder)
    (folder / "a.yaml").symlink_to(folder / "b.yaml")
    (folder / "b.yaml").symlink_to(folder / "a.yaml")
    return folder


def _link_out(root: Path) -> Path:
    outside = root.parent / "secret.yaml"
    outside.write_text(scenario_yaml(id="secret"))
    folder = pack_folder(root, "p-out", {"pack.yaml": MANIFEST.replace("hostile", "h7")})
    (folder / "secret.yaml").symlink_to(outside)
    return folder


def _manifest_folder(root: Path) -> Path:
    folder = root / "p-dir"
    (folder / "pack.yaml").mkdir(parents=True)
    (folder / "one.yaml").write_text(scenario_yaml(id="one"))
    return folder


def many_files_pack(root: Path, count: int = 10_000) -> Path:
    folder = pack_folder(root, "p-many", {"pack.yaml": MANIFEST.replace("hostile", "many")})
    body = scenario_yaml(id="s-number")
    for index in range(count):
        (folder / f"s{index:05}.yaml").write_text(body.replace("s-number", f"s{index:05}"))
    return folder
