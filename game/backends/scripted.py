"""A scripted backend: deterministic replies, a reversible toy tokenizer, a record of every call.

It serves the turn-manager and TUI tests, where the real model would be slow and unpredictable.
It keeps a KV-cache record planned the same way as the llama.cpp backend's (a reused prefix, a
removed and shifted span), so tests can count the prompt tokens a turn had to evaluate.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from game import kvcache
from game.backends.base import (
    BackendError,
    GenerationCancelled,
    GenerationRequest,
    GenerationStats,
    ProgressCallback,
    TokenCallback,
)
from game.kvcache import CacheMode

_PIECES = re.compile(r"\s+|\w+|[^\w\s]")
# Markers that real ChatML models have as single special tokens.
_SPECIAL = re.compile(r"(<\|im_start\|>|<\|im_end\|>)")
BOS = 1
EOS = 2

Script = Sequence[str] | Callable[[str], str]


@dataclass
class RecordedCall:
    """One generate() call as the fake saw it."""

    prompt: list[int]
    evaluated: int
    reply: str
    grammar: str | None = None
    max_tokens: int = 0
    kind: str = "turn"  # "turn", "aside" (a summary, off the game's cache) or "prepare"
    inserted: int = 0  # tokens evaluated in place of a replaced span


@dataclass
class ScriptedBackend:
    """A fake model that answers from a script.

    Args:
        replies: The replies in order (the last one repeats), or a function of the prompt text.
        n_ctx: The context size to report.
        token_delay_s: Seconds to sleep before each token, to test streaming and stopping.
        fail_on_calls: 1-based numbers of the generate() calls that raise BackendError.
        name: The model name to report.
        cache_mode: How its pretend KV cache serves a prompt (see :mod:`game.kvcache`).
        token_seconds: Report timings as if each token took this long (deterministic numbers
            for snapshots); None reports the real time taken.
        read_batch: Prompt tokens it pretends to read per batch (each batch reports progress).
        read_delay_s: Seconds to sleep per batch read, to test progress and cancelling.
        raise_on_calls: 1-based numbers of the generate() calls that raise the given exception
            after a few tokens (a bug in a sampler, a KeyboardInterrupt).
    """

    replies: Script = ("You stand at a crossroads.\n\n- Go north.\n- Go south.\n- Wait.",)
    n_ctx: int = 2048
    token_delay_s: float = 0.0
    fail_on_calls: frozenset[int] = frozenset()
    name: str = "scripted"
    chat_template: str | None = None
    supports_grammar: bool = True
    cache_mode: CacheMode = "shift"
    token_seconds: float | None = None
    read_batch: int = 64
    read_delay_s: float = 0.0
    raise_on_calls: dict[int, BaseException] = field(default_factory=dict)
    closed: bool = False
    calls: list[RecordedCall] = field(default_factory=list)
    _vocab: dict[str, int] = field(default_factory=dict)
    _words: dict[int, str] = field(default_factory=dict)
    _cache: list[int] = field(default_factory=list)

    def _id(self, piece: str) -> int:
        if piece not in self._vocab:
            token = len(self._vocab) + 10
            self._vocab[piece] = token
            self._words[token] = piece
        return self._vocab[piece]

    def bos(self) -> list[int]:
        return [BOS]

    def tokenize(self, text: str, *, special: bool, at_start: bool = False) -> list[int]:
        # A toy vocabulary: nothing merges across pieces, so the start of a prompt is no
        # different from its middle.
        parts = _SPECIAL.split(text) if special else [text]
        tokens: list[int] = []
        for part in parts:
            if special and _SPECIAL.fullmatch(part):
                tokens.append(self._id(part))
            else:
                tokens.extend(self._id(piece) for piece in _PIECES.findall(part))
        return tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(self._words.get(token, "") for token in tokens)

    def close(self) -> None:
        """Like a real model's close: using it afterwards is an error (a crash, for real)."""
        self.closed = True

    def reset_cache(self) -> None:
        """Forget the cached prompt, as a freshly loaded model would."""
        self._cache = []

    def _begin(self, segments: Sequence[Sequence[int]]) -> tuple[float, list[int]]:
        """When a call starts, and its prompt; a closed model fails as a real one does."""
        started = time.perf_counter()
        if self.closed:
            raise BackendError(f"the model {self.name} was closed")
        return started, [token for segment in segments for token in segment]

    def _reply_for(self, prompt: list[int]) -> str:
        if callable(self.replies):
            return self.replies(self.detokenize(prompt))
        index = min(len(self.calls), len(self.replies) - 1)
        return self.replies[index]

    def generate(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        started, prompt = self._begin(segments)
        if len(prompt) + request.max_tokens > self.n_ctx:
            raise BackendError(
                f"prompt of {len(prompt)} tokens + {request.max_tokens} for the reply "
                f"exceeds the context of {self.n_ctx}"
            )
        common, inserted = self._plan(prompt, kvcache.segment_starts(segments))
        evaluated = len(prompt) - common + inserted
        reply = self._reply_for(prompt)
        self.calls.append(
            RecordedCall(
                prompt,
                evaluated,
                reply,
                request.grammar,
                request.max_tokens,
                inserted=inserted,
            )
        )
        if len(self.calls) in self.fail_on_calls:
            raise BackendError(f"scripted failure on call {len(self.calls)}")
        self._read(prompt, common, on_progress)
        reading_s = time.perf_counter() - started
        return self._stream(reply, prompt, evaluated, request, on_token, started, reading_s)

    def _stream(
        self,
        reply: str,
        prompt: list[int],
        evaluated: int,
        request: GenerationRequest,
        on_token: TokenCallback,
        started: float,
        reading_s: float,
        *,
        cache: bool = True,
    ) -> GenerationStats:
        ttft = 0.0
        generated = 0
        finish: str = "eos"
        tokens = self.tokenize(reply, special=False)
        if request.ban_end and tokens:
            # No end token: the script repeats until the reply has its fixed length.
            tokens = (tokens * (request.max_tokens // len(tokens) + 1))[: request.max_tokens]
        error = self.raise_on_calls.get(len(self.calls))
        for token in tokens:
            if error is not None and generated == 2:
                raise error
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            if generated == 0:
                ttft = time.perf_counter() - started
            generated += 1
            if generated >= request.max_tokens:
                on_token(token, self._words[token])
                finish = "length"
                break
            if not on_token(token, self._words[token]):
                finish = "stopped"
                break
            if cache:
                self._cache.append(token)
        total = time.perf_counter() - started
        if self.token_seconds is not None:
            ttft, total = self.token_seconds, self.token_seconds * max(generated, 1)
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=evaluated,
            generated_tokens=generated,
            ttft_s=ttft,
            total_s=total,
            finish_reason=finish,  # type: ignore[arg-type]
            reading_s=reading_s if self.token_seconds is None else 0.0,
        )

    @property
    def edits_cache_in_place(self) -> bool:
        return self.cache_mode == "shift"

    @property
    def cached_tokens(self) -> list[int]:
        """What its pretend KV cache holds."""
        return list(self._cache)

    def generate_aside(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        """Answer a prompt that is not the game's (a summary) without touching the cache."""
        started, prompt = self._begin(segments)
        reply = self._reply_for(prompt)
        self.calls.append(
            RecordedCall(prompt, len(prompt), reply, None, request.max_tokens, kind="aside")
        )
        if len(self.calls) in self.fail_on_calls:
            raise BackendError(f"scripted failure on call {len(self.calls)}")
        cache = self._cache
        try:
            self._read(prompt, 0, on_progress)
        finally:
            self._cache = cache
        reading_s = time.perf_counter() - started
        return self._stream(
            reply, prompt, len(prompt), request, on_token, started, reading_s, cache=False
        )

    def prepare(
        self, segments: Sequence[Sequence[int]], on_progress: ProgressCallback | None = None
    ) -> GenerationStats:
        """Make the pretend cache hold the prompt, evaluating in place what changed."""
        started, prompt = self._begin(segments)
        common, inserted = self._plan(prompt, kvcache.segment_starts(segments), whole=True)
        evaluated = len(prompt) - common + inserted
        self.calls.append(
            RecordedCall(prompt, evaluated, "", None, 0, kind="prepare", inserted=inserted)
        )
        self._read(prompt, common, on_progress)
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=evaluated,
            generated_tokens=0,
            ttft_s=0.0,
            total_s=time.perf_counter() - started,
            finish_reason="eos",
        )

    def _plan(
        self, prompt: list[int], boundaries: set[int], *, whole: bool = False
    ) -> tuple[int, int]:
        """Edit the pretend cache as the llama.cpp backend edits its own (see
        :mod:`game.kvcache`); returns the prompt tokens it then holds and those inserted."""
        planned = [*prompt, EOS] if whole else prompt  # EOS is never cached, never reused
        inserted = 0
        for _ in range(kvcache.MAX_EDITS):
            cache_plan = kvcache.plan(self._cache, planned, self.cache_mode, boundaries)
            self._cache = kvcache.apply(self._cache, prompt, cache_plan)
            inserted += cache_plan.insert
            if cache_plan.drop is None:
                break
        self._cache = self._cache[: cache_plan.reuse]
        return cache_plan.reuse, inserted

    def _read(self, prompt: list[int], common: int, on_progress: ProgressCallback | None) -> None:
        """Pretend to read the prompt after its cached start, in batches, reporting progress;
        a cancel keeps what was read in the cache, as the real backend does."""
        total = len(prompt) - common
        done = 0
        while done < total:
            if self.read_delay_s:
                time.sleep(self.read_delay_s)
            done = min(done + self.read_batch, total)
            self._cache = prompt[: common + done]
            if on_progress is not None and on_progress(done, total) is False:
                raise GenerationCancelled(f"stopped after reading {done} of {total} tokens")
        self._cache = list(prompt)
