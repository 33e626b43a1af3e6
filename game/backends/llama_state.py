"""Save and load one sequence's KV cache through llama.cpp's state API (llama-cpp-python's
low-level bindings), and the backend's bookkeeping around it.

This is the one place that touches ``Llama``'s private context (``_ctx``) and token record
(``input_ids``, ``n_tokens``) for state: llama-cpp-python's public ``save_state``/``load_state``
copy the whole context (every sequence, the logits, the RNG) into Python objects, which for a
7B model is the full cache size twice over, and they keep no token list we could key a store by.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence

import llama_cpp

log = logging.getLogger(__name__)

SEQ = 0


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
