"""Edits of llama.cpp's KV cache that llama-cpp-python has no API for: new tokens evaluated in
place of a span in the middle of the cached prompt, and a side context that answers prompts
that are not the game's (the story-so-far summary) without touching the game's cache.

This module and :mod:`game.backends.llama_state` are the places that reach into ``Llama``'s
private context (``_ctx``), batch (``_batch``) and token record (``input_ids``, ``n_tokens``).

In-place insertion. llama.cpp decodes a batch at explicit positions, and a cell attends only
to cells of its own sequence at lower positions. But it also insists that a sequence's new
tokens follow its highest cached position. So the cached tail (the exchanges still in the
window) is moved aside into sequence 1 for the decode, the new tokens are decoded into
sequence 0 right after the system prompt (they see it and nothing else), and the tail is then
shifted to follow them and handed back to sequence 0. With one stream (the default, one
sequence context) every sequence id maps to the same cells, so moving the tail copies nothing.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence

import llama_cpp
from llama_cpp import _internals

from game.backends.base import GenerationCancelled, ProgressCallback

log = logging.getLogger(__name__)

GAME_SEQ = 0
ASIDE_SEQ = 1


def decode_at(llm: llama_cpp.Llama, tokens: Sequence[int], position: int) -> None:
    """Decode ``tokens`` into sequence 0 at positions ``position`` on (one batch)."""
    llm._batch.set_batch(batch=list(tokens), n_past=position, logits_all=False)
    llm._ctx.decode(llm._batch)


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
    prompt reuses, and what a further edit may reuse); cached tokens after them are removed.
    ``tokens`` are decoded in batches of ``step``, reporting ``(done, len(tokens))`` after
    each; a cancel stops between batches, and the tail then follows what was decoded, so the
    cache stays whole.

    Returns:
        How many of ``tokens`` were decoded (all of them unless cancelled).

    Raises:
        GenerationCancelled: when ``on_progress`` returned False before the last batch.
        RuntimeError: when llama.cpp fails to decode (the tail is handed back first).
    """
    memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
    size = llm.n_tokens
    tail = llm.input_ids[end : end + keep].copy()
    llama_cpp.llama_memory_seq_rm(memory, GAME_SEQ, start, end)
    llama_cpp.llama_memory_seq_rm(memory, GAME_SEQ, end + keep, -1)
    # The tail leaves sequence 0 for the decode (it must not see the new tokens' positions
    # taken, and they must not see it).
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
        if shift:
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
        """Make the cache hold ``prompt``; returns how many tokens were evaluated."""
        common = 0
        limit = min(len(self.tokens), len(prompt) - 1)
        while common < limit and self.tokens[common] == prompt[common]:
            common += 1
        llama_cpp.llama_memory_seq_rm(self._memory(), GAME_SEQ, common, -1)
        self.tokens = list(prompt[:common])
        total = len(prompt) - common
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

    def close(self) -> None:
        self.batch.close()
        self.context.close()
