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

    def tokenize(self, text: str, *, special: bool) -> list[int]:
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
        started = time.perf_counter()
        if self.closed:
            raise BackendError(f"the model {self.name} was closed")
        prompt = [token for segment in segments for token in segment]
        if len(prompt) + request.max_tokens > self.n_ctx:
            raise BackendError(
                f"prompt of {len(prompt)} tokens + {request.max_tokens} for the reply "
                f"exceeds the context of {self.n_ctx}"
            )
        cache_plan = kvcache.plan(self._cache, prompt, self.cache_mode)
        common = cache_plan.reuse
        evaluated = len(prompt) - common
        reply = self._reply_for(prompt)
        self.calls.append(
            RecordedCall(prompt, evaluated, reply, request.grammar, request.max_tokens)
        )
        if len(self.calls) in self.fail_on_calls:
            self._cache = prompt[:common]
            raise BackendError(f"scripted failure on call {len(self.calls)}")
        self._read(prompt, common, on_progress)
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
        )

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
