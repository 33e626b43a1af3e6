"""The llama.cpp backend (llama-cpp-python): a GGUF model on the CPU, or offloaded to a GPU.

Generation runs its own loop over ``Llama.eval`` and one sampler per reply, rather than
``Llama.generate``, so the backend knows exactly which prompt tokens it evaluated, can stop on
the model's end-of-generation tokens and on the caller's word, and keeps the KV cache in step with
the prompt's segments.

The backend is one class in four modules: this one (loading, the vocabulary, a turn's prompt
and reply), :mod:`~game.backends.llama_inplace` (edits of the cache: spans dropped or replaced
in place, the prompt made ready while the player reads, the side context for summaries),
:mod:`~game.backends.llama_state` (caches stored on disk) and
:mod:`~game.backends.llama_sampling` (the sampler chain and the token loop). The first three
reach into llama-cpp-python's private context and token record; each says why.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import llama_cpp

from game import kvcache
from game.backends import llama_inplace, llama_log, llama_sampling, llama_state
from game.backends.base import (
    BackendError,
    GenerationCancelled,
    GenerationRequest,
    GenerationStats,
    ProgressCallback,
    TokenCallback,
    joined_prompt,
)
from game.backends.grammar_sampling import CheckedGrammarSampler
from game.config import model_file_problem
from game.kvcache import CacheMode
from game.kvstore import KvStore, ModelIdentity, model_identity
from game.threads import plan_threads

log = logging.getLogger(__name__)

# Prompt reading reports progress (and may be cancelled) after each batch of this many tokens
# at most: small enough that a 7B model on a CPU reports every few seconds, large enough that
# batched reading keeps its speed (see the README's numbers for ``bench speed``).
PROGRESS_BATCH = 128


def gpu_offload_supported() -> bool:
    """Whether this build of llama.cpp can offload layers to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def check_model_file(path: Path) -> None:
    """Fail with one clear line unless ``path`` is a readable GGUF file."""
    problem = model_file_problem(path)
    if problem is not None:
        raise BackendError(problem)


class LlamaCppBackend(llama_inplace.CacheEdits, llama_state.StoredCaches, llama_sampling.Sampling):
    """A GGUF model loaded with llama-cpp-python.

    Args:
        model_path: The GGUF file.
        n_ctx: Context window in tokens; capped at the size the model was trained on.
        n_gpu_layers: Layers to offload; None offloads all when the build supports it, else 0.
        n_threads: CPU threads for generation; None uses the physical cores.
        n_threads_batch: CPU threads for reading prompts; None uses every logical CPU.
        n_batch: The most prompt tokens read in one batch; progress is reported after each
            batch of at most :data:`PROGRESS_BATCH`.
        kv_store: Where to keep KV caches across processes (see :mod:`game.kvstore`); None
            keeps them in memory only.
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
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        kv_store: KvStore | None = None,
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
        self.threads = plan_threads(n_threads, n_threads_batch)
        self.kv_store = kv_store
        self.stored_loads = 0
        self._piece_cache: dict[int, bytes] = {}
        self._end_cache: dict[int, bool] = {}
        # Two locks, always taken in this order: ``_lock`` for the context (one generation at a
        # time; callbacks run under it) and ``_vocab_lock`` for the vocabulary (tokenizing is
        # read-only and safe beside a decode). A callback that tokenizes therefore never waits
        # for the generation that called it; ``close`` takes both.
        self._lock = threading.Lock()
        self._vocab_lock = threading.Lock()
        self._side: llama_inplace.SideContext | None = None
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
                    n_threads=self.threads.generation,
                    n_threads_batch=self.threads.batch,
                    n_batch=n_batch,
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
        cannot_shift = llama_inplace.shift_problem(self._llm)
        cannot_insert = llama_inplace.insert_problem(self._llm, self._n_ctx)
        self.can_shift = cannot_shift is None
        self.can_insert = cannot_insert is None
        self._unsettled = False
        if cache_mode == "shift" and cannot_shift:
            log.warning(
                "%s: this model's KV cache cannot be shifted (%s): old turns leaving the "
                "window, and each new story so far, will make the prompt be read again",
                model_path.name,
                cannot_shift,
            )
        elif cache_mode == "shift" and cannot_insert:
            log.warning(
                "%s: this model's KV cache cannot take new tokens in place (%s): each new "
                "story so far will make the prompt after it be read again",
                model_path.name,
                cannot_insert,
            )
        self._identity: ModelIdentity | None = None
        if kv_store is not None:
            try:
                self._identity = model_identity(model_path, llama_state.layout(self._llm))
            except OSError as exc:
                log.warning("stored KV caches are off: cannot identify %s: %s", model_path, exc)
        log.info(
            "loaded %s: n_ctx=%d n_gpu_layers=%d gpu_offload=%s bos=%s space_prefix=%s "
            "threads=%d threads_batch=%d kv_store=%s",
            model_path.name,
            self.n_ctx,
            n_gpu_layers,
            gpu_offload_supported(),
            self._add_bos,
            self._space_prefix,
            self.threads.generation,
            self.threads.batch,
            kv_store.folder if self._identity else None,
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
        # Memoized: the decode loop asks for every generated token, and a ctypes call with a
        # fresh buffer costs more than a dict lookup.
        cached = self._piece_cache.get(token)
        if cached is None:
            with self._vocab_lock:
                self._check_open()
                cached = self._piece_cache[token] = self._piece(token)
        return cached

    def _piece(self, token: int) -> bytes:
        buffer = (llama_cpp.ctypes.c_char * 64)()
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
        if size < 0:
            buffer = (llama_cpp.ctypes.c_char * -size)()
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
        return bytes(buffer[:size])

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(token) for token in tokens).decode("utf-8", errors="replace")

    def is_end(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, ``<|im_end|>`` ...)."""
        cached = self._end_cache.get(token)
        if cached is None:
            cached = self._end_cache[token] = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
        return cached

    @property
    def cached_tokens(self) -> list[int]:
        """The tokens whose keys and values are in the KV cache, in order."""
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    def generate(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        prompt = joined_prompt(segments, self.n_ctx, f"n_ctx {self.n_ctx}")
        with self._lock:
            self._check_open()
            try:
                return self._generate(prompt, segments, request, on_token, on_progress)
            except (RuntimeError, OSError, ValueError) as exc:
                # The cache may hold half a batch: start from scratch next time.
                self._llm.reset()
                raise BackendError(f"generation failed: {exc}") from None

    def _generate(
        self,
        prompt: list[int],
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None,
    ) -> GenerationStats:
        started = time.perf_counter()
        llm = self._llm
        self._store_before_switch(prompt)
        reuse, inserted = self._prepare_cache(prompt, kvcache.segment_starts(segments))
        reuse, loaded = self._load_stored(prompt, reuse)
        evaluated = len(prompt) - reuse + inserted
        self._read_prompt(prompt, reuse, on_progress)
        reading_s = time.perf_counter() - started

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

            generated, finish, ttft = self._stream(sample, llm.eval, request, on_token, started)
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=evaluated,
            generated_tokens=generated,
            ttft_s=ttft,
            total_s=time.perf_counter() - started,
            finish_reason=finish,
            reading_s=reading_s,
            stored_tokens=loaded,
        )

    def _read_prompt(
        self,
        prompt: list[int],
        start: int,
        on_progress: ProgressCallback | None,
        *,
        step: int = PROGRESS_BATCH,
    ) -> None:
        """Evaluate ``prompt[start:]`` after the ``start`` cached tokens, in batches, reporting
        after each; a cancel between batches leaves the cache holding exactly what was read
        (``Llama.eval`` records each batch's tokens as it decodes it), so the next prompt
        reuses it."""
        llm = self._llm
        total = len(prompt) - start
        step = min(llm.n_batch, step) if on_progress is not None else llm.n_batch
        done = 0
        while done < total:
            batch = prompt[start + done : start + min(done + step, total)]
            llm.eval(batch)  # drops cached positions from n_tokens on, then decodes
            self._unsettled = False  # the decode rotated the keys an edit shifted
            done += len(batch)
            if on_progress is not None and not on_progress(done, total) and done < total:
                raise GenerationCancelled("prompt reading cancelled")

    def time_decode(self, count: int) -> float:
        """Seconds per token of ``count`` single-token decodes with no sampling, after what
        the cache holds (for ``bench speed``: llama.cpp's decode as llama-cpp-python calls it,
        the floor under the engine's per-token time). The cache is emptied afterwards."""
        with self._lock:
            llm = self._llm
            token = self._anchor[0] if self._anchor else 0
            started = time.perf_counter()
            for _ in range(count):
                llm.eval([token])
            elapsed = time.perf_counter() - started
            llm.reset()
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            return elapsed / max(count, 1)

    def close(self) -> None:
        """Free the model now rather than at garbage collection."""
        with self._lock, self._vocab_lock:
            if not self._closed:
                self._closed = True
                if self._side is not None:
                    self._side.close()
                self._llm.close()
