"""Edits of llama.cpp's KV cache that llama-cpp-python has no API for: a span removed (the
context shift), new tokens evaluated in place of a span in the middle of the cached prompt (a
story-so-far summary), and a side context that answers prompts that are not the game's (the
summary's own prompt) without touching the game's cache.

This module and :mod:`game.backends.llama_state` are the places that reach into ``Llama``'s
private context (``_ctx``), batch (``_batch``) and token record (``input_ids``, ``n_tokens``):
llama-cpp-python only ever appends to its cache or cuts it at a position.

In-place insertion. llama.cpp decodes a batch at explicit positions, and a cell attends only
to cells of its own sequence at positions up to its own (the causal mask compares positions,
not the order cells were written in). But it also insists that a sequence's new tokens start
right after its highest cached position (``llama_batch_allocr::init``: "Y = X + 1"). So the
cached tail (the exchanges still in the window) is moved aside into sequence 1 for the decode,
the new tokens are decoded into sequence 0 right after what precedes the span (they see it and
nothing else: exactly what a fresh evaluation computes for them), and the tail is then shifted
to follow them (``seq_add``: its keys are rotated to the new positions at the next decode, the
K-shift) and handed back to sequence 0. With one stream (llama-cpp-python's default: one
sequence, a unified cache) every sequence id maps to the same cells, so moving the tail copies
nothing. The tail's own keys and values stay those it was computed with, next to the old span:
the one approximation, the same one the plain context shift makes (the README gives its bound).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence

import llama_cpp
from llama_cpp import _internals
from llama_cpp._internals import LlamaSampler

from game import kvcache
from game.backends.base import (
    BackendError,
    FinishReason,
    GenerationCancelled,
    GenerationRequest,
    GenerationStats,
    ProgressCallback,
    TokenCallback,
    joined_prompt,
)
from game.kvcache import CacheMode

log = logging.getLogger(__name__)

GAME_SEQ = 0
ASIDE_SEQ = 1
# Work the player may be waiting on to stop (a summary written while they read, or evaluated
# in place) checks for a cancel after each batch of this many tokens: a 7B model on a CPU
# reads it in about a second.
BACKGROUND_BATCH = 32


def shift_problem(llm: llama_cpp.Llama) -> str | None:
    """Why the cache cannot drop a span and shift what follows, or None when it can.

    Recurrent state cannot be cut in the middle, and a hybrid model's recurrent half refuses
    it although its attention half could shift (llama.cpp then answers can_shift for the
    attention half alone)."""
    if llm._is_recurrent or llm._is_hybrid:
        return "its memory is recurrent"
    memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
    if not memory or not llama_cpp.llama_memory_can_shift(memory):
        return "llama.cpp cannot shift its KV cache"
    return None


def insert_problem(llm: llama_cpp.Llama, n_ctx: int) -> str | None:
    """Why tokens cannot be evaluated in place of a span, or None when they can.

    A sliding window narrower than the context lets llama.cpp reuse the cells of tokens that
    fell out of it, so the part before the span may be gone from the window's layers; and a
    cache split in streams (several sequences, not unified) would copy the tail, not move it."""
    problem = shift_problem(llm)
    if problem is not None:
        return problem
    swa = int(llama_cpp.llama_model_n_swa(llm._model.model))
    if 0 < swa < n_ctx:
        return f"its attention slides over {swa} tokens, fewer than the context"
    params = llm.context_params
    if params.n_seq_max > 1 and not params.kv_unified:
        return "its cache has a stream per sequence"
    return None


def _memory(llm: llama_cpp.Llama) -> ctypes.c_void_p:
    return llama_cpp.llama_get_memory(llm._ctx.ctx)


def decode_at(llm: llama_cpp.Llama, tokens: Sequence[int], position: int) -> None:
    """Decode ``tokens`` into sequence 0 at positions ``position`` on (one batch of at most
    ``n_batch``); only the last token's logits are computed."""
    llm._batch.set_batch(batch=list(tokens), n_past=position, logits_all=False)
    llm._ctx.decode(llm._batch)


def drop_span(llm: llama_cpp.Llama, start: int, end: int) -> None:
    """Remove cache positions ``[start, end)`` and shift the rest down (their keys are rotated
    at the next decode), keeping the record of cached tokens in step."""
    size = llm.n_tokens
    delta = end - start
    if not llm._ctx.kv_cache_seq_rm(GAME_SEQ, start, end):
        raise RuntimeError("llama.cpp refused to remove a span of the KV cache")
    llm._ctx.kv_cache_seq_shift(GAME_SEQ, end, -1, -delta)
    llm.input_ids[start : size - delta] = llm.input_ids[end:size].copy()
    llm.n_tokens = size - delta
    log.info("context shift: %d cached tokens removed at %d, %d kept", delta, start, size - delta)


def replace_span(
    llm: llama_cpp.Llama,
    start: int,
    end: int,
    tokens: Sequence[int],
    keep: int,
    *,
    step: int,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Put ``tokens`` in place of the cached positions ``[start, end)``.

    The ``keep`` cached tokens after the span move to follow the new tokens (the run the
    prompt reuses, and what a further edit may reuse); cached tokens after them are removed,
    so the caller makes ``start + len(tokens) + keep`` fit the context. ``tokens`` are decoded
    in batches of ``step``, reporting ``(done, len(tokens))`` after each; a cancel stops between
    batches, and so does a failed decode: the tail then follows what was decoded, and the
    record of cached tokens says so (a later plan goes on where this one stopped).

    The tail's keys are rotated to their new positions at the next decode: until then the
    cache's state must not be saved (see :func:`settle`).

    Returns:
        How many of ``tokens`` were decoded (all of them unless cancelled).

    Raises:
        GenerationCancelled: when ``on_progress`` returned False before the last batch.
        RuntimeError: when llama.cpp fails to decode (the tail is handed back first).
        ValueError: when the span or the tail is not in the cache.
    """
    size = llm.n_tokens
    if not (0 <= start <= end <= size and 0 <= keep <= size - end and step > 0):
        raise ValueError(f"no span [{start}, {end}) with {keep} kept in a cache of {size}")
    memory = _memory(llm)
    tail = llm.input_ids[end : end + keep].copy()
    llama_cpp.llama_memory_seq_rm(memory, GAME_SEQ, start, end)
    llama_cpp.llama_memory_seq_rm(memory, GAME_SEQ, end + keep, -1)
    # The tail leaves sequence 0 for the decode: the new tokens must start right after what
    # sequence 0 then holds, and a cell of sequence 1 is masked from them.
    llama_cpp.llama_memory_seq_cp(memory, GAME_SEQ, ASIDE_SEQ, end, end + keep)
    llama_cpp.llama_memory_seq_rm(memory, GAME_SEQ, end, end + keep)
    done = 0
    cancelled = False
    try:
        while done < len(tokens):
            batch = tokens[done : done + step]
            decode_at(llm, batch, start + done)
            done += len(batch)
            if on_progress is not None and not on_progress(done, len(tokens)):
                cancelled = done < len(tokens)
                break
    finally:
        shift = start + done - end
        llama_cpp.llama_memory_seq_add(memory, ASIDE_SEQ, end, end + keep, shift)
        llama_cpp.llama_memory_seq_cp(memory, ASIDE_SEQ, GAME_SEQ, -1, -1)
        llama_cpp.llama_memory_seq_rm(memory, ASIDE_SEQ, -1, -1)
        llm.input_ids[start : start + done] = list(tokens[:done])
        llm.input_ids[start + done : start + done + keep] = tail
        llm.n_tokens = start + done + keep
        log.info(
            "in place: %d cached tokens at %d replaced by %d evaluated, %d kept after them "
            "(cache was %d, now %d)",
            end - start,
            start,
            done,
            keep,
            size,
            llm.n_tokens,
        )
    if cancelled:
        raise GenerationCancelled("evaluating in place was cancelled")
    return done


def settle(llm: llama_cpp.Llama) -> None:
    """Apply the K-shift an edit left pending, by reading the last cached token again.

    llama.cpp rotates shifted keys only at the start of its next decode, and its state API
    saves the cells' new positions with the keys not yet rotated: a cache saved between an
    edit and a decode would load wrong. Reading one token is the decode (there is no public
    call for the update alone)."""
    if llm.n_tokens == 0:
        return
    last = int(llm.input_ids[llm.n_tokens - 1])
    llm.n_tokens -= 1
    llm.eval([last])  # removes the last position (and anything stale after it) first


class SideContext:
    """A second llama.cpp context on the same loaded model, for prompts that are not the
    game's: its own KV cache (``n_ctx`` cells), so the game's cache is never disturbed.

    It costs a KV cache of its size, allocated on first use (see the README's memory notes).
    It keeps the tokens it holds, so a prompt that starts as the last one did (the summary's
    instructions) is read only from where they differ.
    """

    def __init__(self, llm: llama_cpp.Llama, n_ctx: int):
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx
        params.n_batch = min(params.n_batch, n_ctx)
        params.n_ubatch = min(params.n_ubatch, params.n_batch)
        self.n_ctx = n_ctx
        self.n_batch = params.n_batch
        self.context = _internals.LlamaContext(model=llm._model, params=params, verbose=True)
        self.batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1)
        self.tokens: list[int] = []

    def _memory(self) -> ctypes.c_void_p:
        return llama_cpp.llama_get_memory(self.context.ctx)

    def read(
        self,
        prompt: Sequence[int],
        step: int,
        on_progress: ProgressCallback | None,
    ) -> int:
        """Make the cache hold ``prompt`` (at least its last token read again, for its
        logits); returns how many tokens were evaluated. A cancel keeps what was read."""
        common = 0
        limit = min(len(self.tokens), len(prompt) - 1)
        while common < limit and self.tokens[common] == prompt[common]:
            common += 1
        llama_cpp.llama_memory_seq_rm(self._memory(), GAME_SEQ, common, -1)
        self.tokens = list(prompt[:common])
        total = len(prompt) - common
        step = max(1, min(step, self.n_batch))
        done = 0
        while done < total:
            batch = list(prompt[common + done : common + min(done + step, total)])
            self.eval(batch)
            done += len(batch)
            if on_progress is not None and not on_progress(done, total) and done < total:
                raise GenerationCancelled("reading the side prompt was cancelled")
        return total

    def eval(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` after what the cache holds."""
        self.batch.set_batch(batch=list(tokens), n_past=len(self.tokens), logits_all=False)
        self.context.decode(self.batch)
        self.tokens += tokens

    def clear(self) -> None:
        """Forget everything (after a failed decode the cells may hold half a batch)."""
        self.tokens = []
        llama_cpp.llama_memory_clear(self._memory(), True)

    def close(self) -> None:
        self.batch.close()
        self.context.close()


class CacheEdits:
    """The llama.cpp backend's edits of its cache, and the work done while the player reads
    (a summary on the side context, the prompt made ready in place): a mixin of
    :class:`game.backends.llamacpp.LlamaCppBackend`, kept here beside the internals it uses."""

    _llm: llama_cpp.Llama
    _lock: threading.Lock
    _side: SideContext | None
    cache_mode: CacheMode
    can_shift: bool
    # Whether a span may be replaced by tokens evaluated in place (see insert_problem).
    can_insert: bool
    shifts: int
    _unsettled: bool
    cached_tokens: list[int]  # the backend's property
    n_ctx: int
    _check_open: Callable[[], None]
    _make_chain: Callable[[GenerationRequest], LlamaSampler]
    _stream: Callable[..., tuple[int, FinishReason, float]]
    _read_prompt: Callable[..., None]

    @property
    def edits_cache_in_place(self) -> bool:
        return self.can_insert and self.cache_mode == "shift"

    def _prepare_cache(
        self,
        prompt: Sequence[int],
        boundaries: set[int],
        on_progress: ProgressCallback | None = None,
        *,
        whole: bool = False,
    ) -> tuple[int, int]:
        """Make the KV cache hold the longest start of ``prompt`` it can, in up to
        :data:`kvcache.MAX_EDITS` edits: spans removed, or replaced by prompt tokens evaluated
        in place (where the cache allows it). ``whole`` lets it hold all of ``prompt`` (nothing
        is sampled after it). The record of cached tokens is cut to what the prompt reuses.
        Returns the prompt tokens it holds and how many were evaluated in place."""
        llm = self._llm
        mode = self.cache_mode if self.can_shift or self.cache_mode == "none" else "prefix"
        if not self.edits_cache_in_place:
            boundaries = set()  # no segment start to realign at: no replacement is planned
        planned = [*prompt, -1] if whole else prompt  # -1: never cached, never reused
        inserted = 0
        for _ in range(kvcache.MAX_EDITS):
            cache_plan = kvcache.plan(self.cached_tokens, planned, mode, boundaries)
            if cache_plan.drop is None:
                break
            start, end = cache_plan.drop
            self.shifts += 1
            self._unsettled = True
            if not cache_plan.insert:
                drop_span(llm, start, end)
                continue
            # The plan reuses at most the context's room after the new tokens: no more is kept.
            room = self.n_ctx - start - cache_plan.insert
            inserted += replace_span(
                llm,
                start,
                end,
                prompt[start : start + cache_plan.insert],
                max(min(llm.n_tokens - end, room), 0),
                step=BACKGROUND_BATCH if on_progress is not None else llm.n_batch,
                on_progress=on_progress,
            )
        llm.n_tokens = cache_plan.reuse
        return cache_plan.reuse, inserted

    def prepare(
        self, segments: Sequence[Sequence[int]], on_progress: ProgressCallback | None = None
    ) -> GenerationStats:
        """Make the cache hold the prompt: a replaced span evaluated in place, the rest read
        in batches; a cancel keeps what was done."""
        prompt = joined_prompt(segments, self.n_ctx, f"n_ctx {self.n_ctx}")
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            try:
                reuse, inserted = self._prepare_cache(
                    prompt, kvcache.segment_starts(segments), on_progress, whole=True
                )
                self._read_prompt(prompt, reuse, on_progress, step=BACKGROUND_BATCH)
            except (RuntimeError, OSError, ValueError) as exc:
                self._llm.reset()
                raise BackendError(f"evaluating in place failed: {exc}") from None
        elapsed = time.perf_counter() - started
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=len(prompt) - reuse + inserted,
            generated_tokens=0,
            ttft_s=elapsed,
            total_s=elapsed,
            finish_reason="eos",
            reading_s=elapsed,
        )

    def generate_aside(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        """Generate on a side context (see :class:`SideContext`), allocated on first use with
        the game's context size: the game's KV cache stays as it is."""
        prompt = joined_prompt(segments, self.n_ctx, f"n_ctx {self.n_ctx}")
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            try:
                if self._side is None:
                    self._side = SideContext(self._llm, self.n_ctx)
                side = self._side
                evaluated = side.read(prompt, BACKGROUND_BATCH, on_progress)
                reading_s = time.perf_counter() - started
                chain = self._make_chain(request)

                def sample() -> int:
                    return chain.sample(side.context, -1)

                generated, finish, ttft = self._stream(
                    sample, side.eval, request, on_token, started
                )
            except (RuntimeError, OSError, ValueError) as exc:
                if self._side is not None:
                    self._side.clear()
                raise BackendError(f"generation failed: {exc}") from None
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=evaluated,
            generated_tokens=generated,
            ttft_s=ttft,
            total_s=time.perf_counter() - started,
            finish_reason=finish,
            reading_s=reading_s,
        )
