"""The stored KV caches' folder (the domain side): keying, longest match, LRU eviction within
its bound, and stale, foreign, corrupt and hostile files ignored and deleted, never a crash."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.kvstore import KvStore, ModelIdentity, model_identity, read_entry

MODEL = ModelIdentity("/models/a.gguf", 100, 1, "aa")
OTHER = ModelIdentity("/models/b.gguf", 200, 2, "bb")


def store(tmp_path: Path, max_bytes: int = 1 << 20) -> KvStore:
    return KvStore(tmp_path / "kv", max_bytes)


def test_longest_stored_start_of_a_prompt_is_found_and_loaded(tmp_path):
    kv = store(tmp_path)
    assert kv.put(MODEL, [1, 2, 3, 4, 5], b"five")
    assert kv.put(MODEL, [1, 2, 9], b"three")
    match = kv.find(MODEL, [1, 2, 3, 4, 7, 8])
    assert match is not None and match.length == 4
    assert match.entry.tokens == (1, 2, 3, 4, 5)
    assert kv.load(match.entry) == b"five"
    assert kv.find(MODEL, [6, 1, 2]) is None
    # Never another model's entry, even for the same tokens.
    assert kv.find(OTHER, [1, 2, 3, 4, 5]) is None


def test_an_entry_covering_another_replaces_it_and_a_covered_one_is_not_written(tmp_path):
    kv = store(tmp_path)
    assert kv.put(MODEL, [1, 2, 3], b"x")
    assert kv.put(MODEL, [1, 2, 3, 4, 5], b"xy")
    assert [entry.tokens for entry in kv.entries(MODEL)] == [(1, 2, 3, 4, 5)]
    assert not kv.put(MODEL, [1, 2], b"z")  # the stored one already holds it
    assert len(kv.entries(MODEL)) == 1


def test_least_recently_used_entries_go_first_within_the_bound(tmp_path):
    payload = b"p" * 1000
    kv = store(tmp_path, max_bytes=3500)
    for first in (10, 20, 30):
        assert kv.put(MODEL, [first, 1, 2], payload)
        time.sleep(0.01)
    # Using the oldest makes it the most recent: the next put evicts the second instead.
    oldest = kv.find(MODEL, [10, 1, 2])
    assert oldest is not None and kv.load(oldest.entry) == payload
    assert kv.put(MODEL, [40, 1, 2], payload)
    kept = sorted(entry.tokens[0] for entry in kv.entries(MODEL))
    assert kept == [10, 30, 40]
    assert kv.total_bytes() <= 3500
    # An entry bigger than the whole bound is not stored at all.
    assert not kv.put(MODEL, [50], b"q" * 4000)


def only_file(kv: KvStore) -> Path:
    (path,) = kv.folder.glob("*.kv")
    return path


@pytest.mark.parametrize(
    "damage",
    ["truncated", "flipped payload byte", "garbage", "empty", "bad header", "huge header"],
)
def test_a_corrupt_entry_is_ignored_and_deleted(tmp_path, damage, caplog):
    kv = store(tmp_path)
    kv.put(MODEL, [1, 2, 3, 4], b"payload bytes")
    path = only_file(kv)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:-3])
    elif damage == "flipped payload byte":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "garbage":
        path.write_bytes(os.urandom(200))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "bad header":
        path.write_bytes(struct.pack("<4sII", b"MAKV", 1, 2) + b"{}")
    else:
        path.write_bytes(struct.pack("<4sII", b"MAKV", 1, 1 << 30))
    match = kv.find(MODEL, [1, 2, 3, 4])
    if match is not None:  # only a payload fault passes the header check
        assert kv.load(match.entry) is None
    assert not path.exists()
    assert "ignored and deleted" in caplog.text


def test_a_stale_entry_of_a_changed_model_file_is_deleted_but_other_models_are_kept(tmp_path):
    kv = store(tmp_path)
    kv.put(MODEL, [1, 2, 3], b"a")
    kv.put(OTHER, [1, 2, 3], b"b")
    changed = ModelIdentity(MODEL.file, MODEL.size + 1, MODEL.mtime_ns, MODEL.head)
    assert kv.find(changed, [1, 2, 3]) is None
    assert [entry.model_file for entry in kv.entries(OTHER)] == [OTHER.file]
    remaining = [read_entry(path).model_file for path in kv.folder.glob("*.kv")]
    assert remaining == [OTHER.file]


def test_an_entry_renamed_to_another_models_key_is_not_used(tmp_path):
    kv = store(tmp_path)
    kv.put(OTHER, [1, 2, 3], b"b")
    path = only_file(kv)
    path.rename(path.with_name(f"{MODEL.key}-0000000000000000.kv"))
    assert kv.find(MODEL, [1, 2, 3]) is None
    assert not list(kv.folder.glob("*.kv"))


def test_model_identity_follows_the_file(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    first = model_identity(model, "k1")
    assert model_identity(model, "k1").key == first.key
    assert model_identity(model, "k2").key != first.key  # another cache layout
    model.write_bytes(b"GGUF" + b"\1" * 100)
    os.utime(model, ns=(1, 1))
    assert model_identity(model, "k1").key != first.key


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), cut=st.integers(0, 400))
def test_hostile_files_never_crash_the_store(tmp_path, data, cut):
    kv = store(tmp_path / str(abs(hash((data, cut)))))
    kv.put(MODEL, [1, 2, 3], b"real")
    hostile = kv.folder / f"{MODEL.key}-ffffffffffffffff.kv"
    real = only_file(kv)
    hostile.write_bytes(real.read_bytes()[:cut] + data)
    match = kv.find(MODEL, [1, 2, 3, 4])
    if match is not None:
        payload = kv.load(match.entry)
        assert payload is None or isinstance(payload, bytearray)
    for path in kv.folder.glob("*.kv"):
        read_entry(path)  # whatever is left is a well-formed entry
