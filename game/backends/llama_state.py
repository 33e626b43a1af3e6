"""Save and load one sequence's KV cache through llama.cpp's state API (llama-cpp-python's
low-level bindings), and the llama.cpp backend's stored caches built on it (a mixin of
:class:`game.backends.llamacpp.LlamaCppBackend`).

With :mod:`game.backends.llama_inplace`, the one place that touches ``Llama``'s private
context (``_ctx``) and token record (``input_ids``, ``n_tokens``): llama-cpp-python's public
``save_state``/``load_state`` copy the whole context (every sequence, the logits, the RNG) into
Python objects, which for a 7B model is the full cache size twice over, and they keep no token
list we could key a store by.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Sequence

import llama_cpp

from game import kvcache
from game.backends import llama_inplace
from game.kvstore import KvStore, ModelIdentity

log = logging.getLogger(__name__)

SEQ = 0
# A stored cache is loaded only when it saves reading at least this many tokens.
MIN_STORE_GAIN = 32
# The cache is stored before a prompt replaces it when it holds at least this many tokens and
# the new prompt keeps less than half of them (another game; not a retry or an undo).
MIN_STORE_TOKENS = 64


def layout(llm: llama_cpp.Llama) -> str:
    """What besides the model shapes the cache's bytes: the K and V types and attention mode."""
    params = llm.context_params
    return f"k{params.type_k}-v{params.type_v}-fa{params.flash_attn_type}"


def get_state(llm: llama_cpp.Llama) -> ctypes.Array[ctypes.c_uint8] | None:
    """The bytes of sequence 0's cache, or None when llama.cpp gives none."""
    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
    if not size:
        return None
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ)
    if written != size:
        log.warning("llama.cpp wrote %d of %d bytes of the KV cache's state", written, size)
        return None
    return buffer


def set_state(llm: llama_cpp.Llama, payload: bytearray, tokens: Sequence[int], keep: int) -> bool:
    """Load ``payload`` (the cache of ``tokens``) into sequence 0 and keep its first ``keep``
    positions; the backend's record of cached tokens follows. On failure the cache is empty
    (llama.cpp clears the sequence when a load fails) and False is returned."""
    buffer = (ctypes.c_uint8 * len(payload)).from_buffer(payload)
    read = llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(payload), SEQ)
    if read != len(payload):
        llm._ctx.kv_cache_seq_rm(SEQ, 0, -1)
        llm.n_tokens = 0
        return False
    llm._ctx.kv_cache_seq_rm(SEQ, keep, -1)
    llm.input_ids[:keep] = tokens[:keep]
    llm.n_tokens = keep
    return True


class StoredCaches:
    """The backend's KV caches kept on disk across processes (see :mod:`game.kvstore`)."""

    _llm: llama_cpp.Llama
    _lock: threading.Lock
    kv_store: KvStore | None
    _identity: ModelIdentity | None
    stored_loads: int
    _closed: bool
    # An edit shifted cached positions and no decode has rotated their keys yet.
    _unsettled: bool
    cached_tokens: list[int]  # the backend's property

    def _store_before_switch(self, prompt: list[int]) -> None:
        """Store the cache before a prompt that keeps less than half of it replaces it."""
        cached = self._llm.n_tokens
        if self._identity is None or cached < MIN_STORE_TOKENS:
            return
        if kvcache.common_prefix(self._llm.input_ids[:cached].tolist(), prompt) * 2 < cached:
            self._store()

    def _store(self) -> bool:
        if self.kv_store is None or self._identity is None or self._llm.n_tokens == 0:
            return False
        started = time.perf_counter()
        if self._unsettled:
            llama_inplace.settle(self._llm)
            self._unsettled = False
        tokens = self.cached_tokens
        state = get_state(self._llm)
        if state is None:
            return False
        stored = self.kv_store.put(self._identity, tokens, memoryview(state).cast("B"))
        if stored:
            log.info(
                "stored %d tokens' KV cache in %.2f s", len(tokens), time.perf_counter() - started
            )
        return stored

    def _load_stored(self, prompt: list[int], reuse: int) -> tuple[int, int]:
        """Load the stored cache sharing the longest start with ``prompt`` when it saves
        reading at least :data:`MIN_STORE_GAIN` tokens.

        Returns:
            The prompt tokens the cache now holds, and how many of them came from the store.
        """
        if self.kv_store is None or self._identity is None:
            return reuse, 0
        match = self.kv_store.find(self._identity, prompt)
        keep = min(match.length, len(prompt) - 1) if match else 0
        if match is None or keep < reuse + MIN_STORE_GAIN:
            return reuse, 0
        started = time.perf_counter()
        payload = self.kv_store.load(match.entry)
        if payload is None:
            return reuse, 0
        if not set_state(self._llm, payload, match.entry.tokens, keep):
            # llama.cpp emptied the cache: what the plan reused is gone too.
            self.kv_store.discard(match.entry, "llama.cpp could not load it")
            return 0, 0
        self.stored_loads += 1
        log.info(
            "loaded %d of the prompt's %d tokens from the stored KV cache %s in %.2f s",
            keep,
            len(prompt),
            match.entry.path.name,
            time.perf_counter() - started,
        )
        return keep, keep

    def persist(self) -> bool:
        """Store the KV cache now (a game is quit, saved or switched); whether it was written.
        Failures are logged, never raised."""
        with self._lock:
            if self._closed:
                return False
            try:
                return self._store()
            except (RuntimeError, OSError, ValueError) as exc:
                log.warning("the KV cache was not stored: %s", exc)
                return False
