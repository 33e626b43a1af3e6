"""A tiny LLaMA model with random weights and LLaMA-1/2's real SentencePiece vocabulary.

Metharme 7B and Pygmalion-2 use LLaMA's vocabulary, where the Metharme role markers are plain
text; the embedded SmolLM2 model is GPT-2-style BPE with ChatML special tokens. This model lets
the test suite (and the benchmarks) run the tokenization, BOS/EOS, RoPE shifts, grammars and the
turn loop exactly as they run on Metharme, without a download: its text is gibberish.

The vocabulary comes from llama.cpp's vocab-only test file ``ggml-vocab-llama-spm.gguf`` (MIT,
kept in ``tests/data/llama-spm`` with llama.cpp's licence). Run ``python -m tests.tiny_llama OUT``
to write the model to a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

VOCAB = Path(__file__).parent / "data" / "llama-spm" / "ggml-vocab-llama-spm.gguf"

# Small enough to write in well under a second and to run fast on two cores; the context is
# LLaMA-2's.
N_EMBD = 64
N_LAYERS = 2
N_HEAD = 4
N_FF = 128
N_CTX_TRAIN = 4096


def _copy_tokenizer(writer: object, vocab: Path) -> int:
    """Copy every ``tokenizer.ggml.*`` field of the vocab file; return the vocabulary size."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(vocab))
    size = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == GGUFValueType.STRING:
                values = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                values = [field.parts[i][0].item() for i in field.data]
            writer.add_array(key, values)  # type: ignore[attr-defined]
            if key == "tokenizer.ggml.tokens":
                size = len(values)
        elif kind == GGUFValueType.STRING:
            writer.add_string(key, bytes(field.parts[field.data[0]]).decode("utf-8"))  # type: ignore[attr-defined]
        else:
            value = field.parts[field.data[0]][0].item()
            adders = {
                GGUFValueType.BOOL: "add_bool",
                GGUFValueType.UINT32: "add_uint32",
                GGUFValueType.INT32: "add_int32",
                GGUFValueType.FLOAT32: "add_float32",
            }
            getattr(writer, adders[kind])(key, value)
    return size


def build(path: Path, *, seed: int = 0, vocab: Path = VOCAB) -> Path:
    """Write the model to ``path`` (about 17 MB, f32) and return ``path``."""
    import numpy as np
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama-spm-random")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all f32
    n_vocab = _copy_tokenizer(writer, vocab)

    def weight(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    # numpy shapes are (rows, columns): GGUF stores them the other way round, as llama.cpp wants.
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, scale=1.0))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD, scale=0.5))
    for layer in range(N_LAYERS):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weight(N_EMBD, N_EMBD, scale=0.2))
        writer.add_tensor(f"{block}.ffn_norm.weight", ones)
        writer.add_tensor(f"{block}.ffn_gate.weight", weight(N_FF, N_EMBD, scale=0.2))
        writer.add_tensor(f"{block}.ffn_up.weight", weight(N_FF, N_EMBD, scale=0.2))
        writer.add_tensor(f"{block}.ffn_down.weight", weight(N_EMBD, N_FF, scale=0.2))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":  # pragma: no cover - a developer's tool
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.tiny_llama OUT.gguf")
    print(build(Path(sys.argv[1])))
