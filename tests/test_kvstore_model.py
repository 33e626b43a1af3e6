"""The KV cache stored across processes, and prompt reading in batches, on the real llama.cpp
backend and the embedded model."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from game.backends.base import GenerationCancelled, GenerationRequest
from game.backends.llamacpp import PROGRESS_BATCH, LlamaCppBackend
from game.config import embedded_model_path
from game.kvstore import KvStore, ModelIdentity, read_entry
from game.session import DEFAULT_SAMPLING

pytestmark = pytest.mark.model

GREEDY = DEFAULT_SAMPLING.model_copy(update={"temperature": 0.0})
REQUEST = GenerationRequest(max_tokens=12, sampling=GREEDY)


def load(store: KvStore | None = None) -> LlamaCppBackend:
    return LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=1, kv_store=store)


@pytest.fixture(scope="module")
def reference() -> LlamaCppBackend:
    return load()


def story(backend: LlamaCppBackend) -> list[int]:
    """A prompt of about 400 tokens: over three reading batches."""
    text = " ".join(f"The lamp number {i} flickers in the hall." for i in range(40))
    return backend.tokenize(text, special=False)


def reply(backend: LlamaCppBackend, prompt: list[int], **kwargs) -> tuple[str, object]:
    pieces: list[str] = []
    stats = backend.generate([prompt], REQUEST, lambda t, p: pieces.append(p) or True, **kwargs)
    return "".join(pieces), stats


def fresh(reference: LlamaCppBackend, prompt: list[int]) -> str:
    """The reply when the whole prompt is read from scratch."""
    reference._llm.reset()
    return reply(reference, prompt)[0]


def test_a_stored_cache_serves_a_new_process_and_gives_the_same_reply(tmp_path, reference):
    store = KvStore(tmp_path / "kv", 1 << 30)
    prompt = story(reference)
    first = load(store)
    text, stats = reply(first, prompt)
    assert stats.evaluated_tokens == len(prompt) and stats.stored_tokens == 0
    assert first.persist()
    (entry,) = store.entries(first._identity)
    assert entry.tokens[: len(prompt)] == tuple(prompt)
    first.close()

    second = load(store)  # as a resumed game in a new process
    again, stats = reply(second, prompt)
    assert stats.stored_tokens == len(prompt) - 1 and stats.evaluated_tokens == 1
    assert again == text == fresh(reference, prompt)
    # A new prompt that starts the same way (the same scenario's system prompt) loads that start.
    other = prompt[:200] + reference.tokenize(" A cat walks in.", special=False)
    second._llm.reset()
    _, stats = reply(second, other)
    assert stats.stored_tokens == 200 and stats.evaluated_tokens == len(other) - 200
    second.close()


def test_the_cache_is_stored_when_another_game_replaces_it(tmp_path, reference):
    store = KvStore(tmp_path / "kv", 1 << 30)
    backend = load(store)
    prompt = story(reference)
    reply(backend, prompt)
    assert not list(store.folder.glob("*.kv"))  # nothing stored while the game goes on
    reply(backend, reference.tokenize("Something else entirely.", special=False))
    (path,) = store.folder.glob("*.kv")
    assert read_entry(path).tokens[: len(prompt)] == tuple(prompt)
    backend.close()


def stored_file(tmp_path: Path, reference: LlamaCppBackend) -> tuple[KvStore, Path, list[int]]:
    store = KvStore(tmp_path / "kv", 1 << 30)
    backend = load(store)
    prompt = story(reference)
    reply(backend, prompt)
    backend.persist()
    backend.close()
    (path,) = store.folder.glob("*.kv")
    return store, path, prompt


def rewrite_payload(path: Path, payload: bytes) -> None:
    """Replace an entry's payload, keeping its header's size and checksum right."""
    entry = read_entry(path)
    head = path.read_bytes()[: entry.payload_offset]
    old = f'"payload_bytes": {entry.payload_bytes}, "payload_crc32": {entry.payload_crc}'
    new = f'"payload_bytes": {len(payload)}, "payload_crc32": {zlib.crc32(payload)}'
    length = int.from_bytes(head[8:12], "little")
    header = head[12 : 12 + length].decode().replace(old, new).encode()
    head = head[:8] + len(header).to_bytes(4, "little") + header + head[12 + length :]
    path.write_bytes(head + payload)


@pytest.mark.parametrize("damage", ["truncated file", "state llama.cpp cannot load"])
def test_a_broken_entry_is_ignored_deleted_and_the_prompt_read(tmp_path, reference, damage):
    store, path, prompt = stored_file(tmp_path, reference)
    if damage == "truncated file":
        path.write_bytes(path.read_bytes()[:-1000])
    else:
        payload = path.read_bytes()[read_entry(path).payload_offset :]
        rewrite_payload(path, payload[: len(payload) // 2])
    backend = load(store)
    text, stats = reply(backend, prompt)
    assert stats.stored_tokens == 0 and stats.evaluated_tokens == len(prompt)
    assert not path.exists()
    assert text == fresh(reference, prompt)
    backend.close()


def test_an_entry_for_other_tokens_or_another_model_is_not_used(tmp_path, reference):
    store, path, prompt = stored_file(tmp_path, reference)
    backend = load(store)
    other = reference.tokenize("Nothing like the stored story.", special=False) * 10
    _, stats = reply(backend, other)
    assert stats.stored_tokens == 0 and path.exists()
    # The same file under another model's name and header: never loaded, deleted when seen.
    foreign = ModelIdentity("/elsewhere/other.gguf", 1, 1, "other")
    payload = path.read_bytes()[read_entry(path).payload_offset :]
    path.unlink()
    store.put(foreign, prompt, payload)
    (moved,) = store.folder.glob("*.kv")
    moved.rename(moved.with_name(f"{backend._identity.key}-0123456789abcdef.kv"))
    backend._llm.reset()
    _, stats = reply(backend, prompt)
    assert stats.stored_tokens == 0 and stats.evaluated_tokens == len(prompt)
    assert not list(store.folder.glob("*.kv"))
    backend.close()


def test_the_store_stays_within_its_bound(tmp_path, reference):
    store, path, _ = stored_file(tmp_path, reference)
    size = path.stat().st_size
    store.max_bytes = int(size * 1.5)
    backend = load(store)
    reply(backend, reference.tokenize("A different game. " * 30, special=False))
    assert backend.persist()
    assert [p.name for p in store.folder.glob("*.kv")] != [path.name]
    assert store.total_bytes() <= store.max_bytes
    backend.close()


def test_reading_reports_each_batch_and_a_cancel_keeps_the_cache_consistent(reference):
    prompt = story(reference)
    assert len(prompt) > 2 * PROGRESS_BATCH
    expected = fresh(reference, prompt)
    reference._llm.reset()
    reports: list[tuple[int, int]] = []

    def cancel_after_two(done: int, total: int) -> bool:
        reports.append((done, total))
        return len(reports) < 2

    with pytest.raises(GenerationCancelled):
        reply(reference, prompt, on_progress=cancel_after_two)
    assert reports == [(PROGRESS_BATCH, len(prompt)), (2 * PROGRESS_BATCH, len(prompt))]
    assert reference.cached_tokens == prompt[: 2 * PROGRESS_BATCH]
    # The next call reads only the rest, and the reply is the one a fresh read gives.
    text, stats = reply(reference, prompt, on_progress=lambda d, t: True)
    assert stats.evaluated_tokens == len(prompt) - 2 * PROGRESS_BATCH
    assert text == expected
