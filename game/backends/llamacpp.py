"""The llama.cpp backend (llama-cpp-python): a GGUF model on the CPU, or offloaded to a GPU.

Generation runs its own loop over ``Llama.eval`` and one sampler per reply, rather than
``Llama.generate``, so the backend knows exactly which prompt tokens it evaluated, can stop on
the model's end-of-generation tokens and on the caller's word, and keeps the KV cache in step with
the prompt's segments.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaSampler

from game import kvcache
from game.backends import llama_log
from game.backends.base import (
    BackendError,
    FinishReason,
    GenerationRequest,
    GenerationStats,
    ProgressCallback,
    TokenCallback,
)
from game.backends.grammar_sampling import CheckedGrammarSampler
from game.config import model_file_problem
from game.kvcache import CacheMode

log = logging.getLogger(__name__)


def gpu_offload_supported() -> bool:
    """Whether this build of llama.cpp can offload layers to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def check_model_file(path: Path) -> None:
    """Fail with one clear line unless ``path`` is a readable GGUF file."""
    problem = model_file_problem(path)
    if problem is not None:
        raise BackendError(problem)


class LlamaCppBackend:
    """A GGUF model loaded with llama-cpp-python.

    Args:
        model_path: The GGUF file.
        n_ctx: Context window in tokens; capped at the size the model was trained on.
        n_gpu_layers: Layers to offload; None offloads all when the build supports it, else 0.
        n_threads: CPU threads; None lets llama.cpp choose.
        seed: Default sampling seed when a request carries none.
        cache_mode: ``shift`` (the default) reuses the cached common prefix of the last prompt
            and, when old turns have left the window, removes their span from the KV cache and
            shifts the rest down so that it is reused too; ``prefix`` reuses the common prefix
            only (llama-cpp-python's own behaviour); ``none`` evaluates every prompt from
            scratch. Both are baselines for benchmarks.

    Raises:
        BackendError: when the file is missing, is not a GGUF, or fails to load.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        seed: int | None = None,
        cache_mode: CacheMode = "shift",
    ):
        llama_log.install()
        check_model_file(model_path)
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu_offload_supported() else 0
        self.model_path = model_path
        self.n_gpu_layers = n_gpu_layers
        self.cache_mode: CacheMode = cache_mode
        self._default_seed = llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed
        self.shifts = 0
        # Two locks, always taken in this order: ``_lock`` for the context (one generation at a
        # time; callbacks run under it) and ``_vocab_lock`` for the vocabulary (tokenizing is
        # read-only and safe beside a decode). A callback that tokenizes therefore never waits
        # for the generation that called it; ``close`` takes both.
        self._lock = threading.Lock()
        self._vocab_lock = threading.Lock()
        self._closed = False
        # verbose=True keeps llama-cpp-python from dup2-ing the process's stdout and stderr to
        # /dev/null while it loads (which would blank a TUI drawing from another thread); its
        # Python prints go to the log instead, and llama.cpp's C log goes through llama_log.
        stream = llama_log.LoggingStream(llama_log.log)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                self._llm = llama_cpp.Llama(
                    str(model_path),
                    n_ctx=n_ctx,
                    n_gpu_layers=n_gpu_layers,
                    n_threads=n_threads,
                    seed=llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed,
                    verbose=True,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BackendError(f"failed to load model {model_path.name}: {reason}") from None
        finally:
            stream.flush()
        model = self._llm._model
        # llama.cpp pads the context it allocates (to a multiple of 256), but llama-cpp-python
        # records tokens in an array of the size asked for: a prompt must fit both.
        self._n_ctx = min(self._llm.n_ctx(), len(self._llm.input_ids))
        self._vocab = model.vocab
        trained = model.n_ctx_train()
        if trained and n_ctx > trained:
            log.warning("n_ctx %d is more than the model was trained on (%d)", n_ctx, trained)
        metadata = self._llm.metadata
        self._chat_template = metadata.get("tokenizer.chat_template")
        self._vocabulary = metadata.get("tokenizer.ggml.model")
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        # SentencePiece vocabularies (LLaMA-1/2, so Metharme) put a space before the first
        # piece of any text they tokenize; a segment in mid-prompt must not get one.
        self._space_prefix = model.vocab_type() == llama_cpp.LLAMA_VOCAB_TYPE_SPM and (
            metadata.get("tokenizer.ggml.add_space_prefix", "true") != "false"
        )
        self._anchor = self._raw_tokenize("\n", special=False)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        memory = llama_cpp.llama_get_memory(self._llm._ctx.ctx)
        self.can_shift = bool(memory) and bool(llama_cpp.llama_memory_can_shift(memory))
        if cache_mode == "shift" and not self.can_shift:
            log.warning(
                "%s: this model's KV cache cannot be shifted (recurrent or sliding-window "
                "attention); old turns leaving the window will make the prompt be read again",
                model_path.name,
            )
        log.info(
            "loaded %s: n_ctx=%d n_gpu_layers=%d gpu_offload=%s bos=%s space_prefix=%s",
            model_path.name,
            self.n_ctx,
            n_gpu_layers,
            gpu_offload_supported(),
            self._add_bos,
            self._space_prefix,
        )

    # -- the Backend protocol -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.model_path.name

    @property
    def n_ctx(self) -> int:
        # Kept in Python: a status line may ask after the model was closed.
        return self._n_ctx

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    @property
    def vocabulary(self) -> str | None:
        """The GGUF's tokenizer model: ``llama`` (SentencePiece, as Metharme and Pygmalion-2
        use) or ``gpt2`` (BPE) and so on; None when the file does not say."""
        return self._vocabulary

    @property
    def supports_grammar(self) -> bool:
        return True

    def bos(self) -> list[int]:
        return [self._llm.token_bos()] if self._add_bos else []

    def _raw_tokenize(self, text: str, *, special: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"the model {self.name} was closed")

    def tokenize(self, text: str, *, special: bool, at_start: bool = False) -> list[int]:
        if not text:
            return []
        with self._vocab_lock:
            self._check_open()
            # At the start of a prompt llama.cpp's own tokenization (llama-server, KoboldCpp)
            # gives SentencePiece its leading space: "<|system|>" begins with "▁<".
            if at_start or not self._space_prefix:
                return self._raw_tokenize(text, special=special)
            # Tokenize after a newline and drop the newline's tokens: what remains is the text
            # as it tokenizes in mid-prompt, without the leading space SentencePiece adds.
            anchored = self._raw_tokenize("\n" + text, special=special)
            if anchored[: len(self._anchor)] == self._anchor:
                return anchored[len(self._anchor) :]
            return self._raw_tokenize(text, special=special)

    def piece(self, token: int) -> bytes:
        """The bytes of one token, special tokens written out, no leading space stripped."""
        with self._vocab_lock:
            self._check_open()
            buffer = (llama_cpp.ctypes.c_char * 64)()
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
            if size < 0:
                buffer = (llama_cpp.ctypes.c_char * -size)()
                size = llama_cpp.llama_token_to_piece(
                    self._vocab, token, buffer, len(buffer), 0, True
                )
            return bytes(buffer[:size])

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(token) for token in tokens).decode("utf-8", errors="replace")

    def is_end(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, ``<|im_end|>`` ...)."""
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    @property
    def cached_tokens(self) -> list[int]:
        """The tokens whose keys and values are in the KV cache, in order."""
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    def _prepare_cache(self, prompt: Sequence[int]) -> int:
        """Make the KV cache hold the longest start of ``prompt`` it can; return its length."""
        mode = self.cache_mode if self.can_shift or self.cache_mode == "none" else "prefix"
        cache_plan = kvcache.plan(self.cached_tokens, prompt, mode)
        if cache_plan.drop is not None:
            self._drop_span(*cache_plan.drop)
        return cache_plan.reuse

    def _drop_span(self, start: int, end: int) -> None:
        """Remove cache positions [start, end) and shift the rest down, keeping the record of
        cached tokens in step."""
        llm = self._llm
        size = llm.n_tokens
        delta = end - start
        if not llm._ctx.kv_cache_seq_rm(0, start, end):
            raise RuntimeError("llama.cpp refused to remove a span of the KV cache")
        llm._ctx.kv_cache_seq_shift(0, end, -1, -delta)
        llm.input_ids[start : size - delta] = llm.input_ids[end:size].copy()
        llm.n_tokens = size - delta
        self.shifts += 1
        log.info(
            "context shift: %d cached tokens removed at %d, %d kept", delta, start, size - delta
        )

    def generate(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        prompt = [token for segment in segments for token in segment]
        if not prompt:
            raise BackendError("empty prompt")
        if len(prompt) >= self.n_ctx:
            raise BackendError(f"prompt of {len(prompt)} tokens does not fit n_ctx {self.n_ctx}")
        with self._lock:
            self._check_open()
            try:
                return self._generate(prompt, request, on_token)
            except (RuntimeError, OSError, ValueError) as exc:
                # The cache may hold half a batch: start from scratch next time.
                self._llm.reset()
                raise BackendError(f"generation failed: {exc}") from None

    def _generate(
        self, prompt: list[int], request: GenerationRequest, on_token: TokenCallback
    ) -> GenerationStats:
        started = time.perf_counter()
        llm = self._llm
        reuse = self._prepare_cache(prompt)
        llm.n_tokens = reuse
        evaluated = len(prompt) - reuse
        llm.eval(prompt[reuse:])  # drops cached positions from n_tokens on, then decodes

        chain = self._make_chain(request)
        with contextlib.ExitStack() as cleanup:
            if request.grammar:
                guided = CheckedGrammarSampler(
                    llm._ctx.ctx, self._vocab, chain.sampler, request.grammar
                )
                cleanup.callback(guided.close)
                sample = guided.sample
            else:

                def sample() -> int:
                    return chain.sample(llm._ctx, -1)

            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            ttft = 0.0
            generated = 0
            finish: FinishReason = "length"
            while generated < request.max_tokens:
                token = sample()
                if generated == 0:
                    ttft = time.perf_counter() - started
                if self.is_end(token):
                    finish = "eos"
                    break
                generated += 1
                keep_going = on_token(token, decoder.decode(self.piece(token)))
                if generated >= request.max_tokens:
                    break
                if not keep_going:
                    finish = "stopped"
                    break
                llm.eval([token])
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=evaluated,
            generated_tokens=generated,
            ttft_s=ttft,
            total_s=time.perf_counter() - started,
            finish_reason=finish,
        )

    @functools.cached_property
    def _end_tokens(self) -> list[int]:
        """Every end-of-generation token (a scan of the vocabulary, so only when first asked:
        fixed-length replies need it, a game never does)."""
        return [token for token in range(self._n_vocab) if self.is_end(token)]

    def _make_chain(self, request: GenerationRequest) -> LlamaSampler:
        """The sampler chain for one reply: end-of-generation mask (if asked), repetition
        penalty, top-k, top-p, min-p, temperature, then a seeded draw (greedy at temperature 0)."""
        sampling = request.sampling
        chain = LlamaSampler()
        if request.ban_end:
            chain.add_logit_bias(self._n_vocab, dict.fromkeys(self._end_tokens, -math.inf))
        chain.add_penalties(
            n_vocab=self._n_vocab,
            penalty_last_n=64,
            penalty_repeat=sampling.repeat_penalty or 1.0,
            penalty_freq=0.0,
            penalty_present=0.0,
        )
        temperature = sampling.temperature if sampling.temperature is not None else 0.8
        if temperature <= 0:
            chain.add_greedy()
            return chain
        if sampling.top_k:
            chain.add_top_k(sampling.top_k)
        chain.add_top_p(sampling.top_p if sampling.top_p is not None else 1.0, 1)
        chain.add_min_p(sampling.min_p or 0.0, 1)
        chain.add_temp(temperature)
        seed = request.seed if request.seed is not None else self._default_seed
        chain.add_dist(seed)
        return chain

    def close(self) -> None:
        """Free the model now rather than at garbage collection."""
        with self._lock, self._vocab_lock:
            if not self._closed:
                self._closed = True
                self._llm.close()
