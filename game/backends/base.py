"""The one protocol every model backend implements, and the plain data it exchanges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from game.scenario import Sampling

FinishReason = Literal["eos", "length", "stopped"]

# Called with each generated token id and its text; returning False stops generation.
TokenCallback = Callable[[int, str], bool]

# Called while the prompt is read, after each batch, with (prompt tokens read so far, prompt
# tokens to read in all this call); returning False cancels the call: ``generate`` then raises
# GenerationCancelled and the reply has not started.
ProgressCallback = Callable[[int, int], bool]


class BackendError(Exception):
    """A backend failed: the model did not load, or generation broke. The message is one line."""


class GenerationCancelled(BackendError):
    """The caller cancelled a generation before its reply started (while the prompt was read)."""


def joined_prompt(segments: Sequence[Sequence[int]], n_ctx: int, context: str) -> list[int]:
    """The prompt's tokens, the segments joined, checked before a backend spends anything on
    them; ``context`` names the context in the error (``n_ctx 2048``).

    Raises:
        BackendError: when the prompt is empty or leaves no room in the context.
    """
    prompt = [token for segment in segments for token in segment]
    if not prompt:
        raise BackendError("empty prompt")
    if len(prompt) >= n_ctx:
        raise BackendError(f"prompt of {len(prompt)} tokens does not fit {context}")
    return prompt


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate after a prompt.

    Attributes:
        max_tokens: The most tokens the reply may have.
        sampling: Fully resolved sampling settings (no field None).
        seed: The sampling seed for this reply, or None for the backend's own.
        grammar: A GBNF grammar the reply must follow, or None for free generation.
        ban_end: Never end the reply early: the end-of-generation tokens are masked, so it has
            exactly ``max_tokens`` tokens (for benchmarks that need a fixed reply length).
    """

    max_tokens: int
    sampling: Sampling
    seed: int | None = None
    grammar: str | None = None
    ban_end: bool = False


@dataclass(frozen=True)
class GenerationStats:
    """What one generation cost.

    Attributes:
        prompt_tokens: Tokens in the prompt.
        evaluated_tokens: Prompt tokens the model actually had to process (the rest were cached).
        generated_tokens: Tokens the model produced.
        ttft_s: Seconds from the call to the first generated token.
        total_s: Seconds for the whole call.
        decode_s: Seconds spent generating after the first token (prompt reading excluded);
            None means ``total_s - ttft_s``.
        finish_reason: ``eos`` (the model ended its reply), ``length`` (max_tokens reached) or
            ``stopped`` (the callback asked to stop).
        reading_s: Seconds spent making the prompt ready (loading a stored cache, reading the
            rest), before sampling began.
        stored_tokens: Prompt tokens loaded from a stored KV cache instead of being read.
    """

    prompt_tokens: int
    evaluated_tokens: int
    generated_tokens: int
    ttft_s: float
    total_s: float
    finish_reason: FinishReason
    decode_s: float | None = None
    passes: int = 1
    reading_s: float = 0.0
    stored_tokens: int = 0

    @property
    def decode_seconds(self) -> float:
        return self.total_s - self.ttft_s if self.decode_s is None else self.decode_s

    @property
    def tokens_per_s(self) -> float:
        """Generation speed after each pass's first token (prompt reading excluded)."""
        tokens = self.generated_tokens - self.passes
        if tokens <= 0 or self.decode_seconds <= 0:
            return 0.0
        return tokens / self.decode_seconds


class Backend(Protocol):
    """A model that tokenizes text and streams a reply to a prompt of token segments."""

    @property
    def name(self) -> str:
        """A short name for status lines and saves (the model file's name)."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window in tokens."""
        ...

    @property
    def chat_template(self) -> str | None:
        """The chat template the model file carries, if any."""
        ...

    @property
    def supports_grammar(self) -> bool:
        """Whether ``GenerationRequest.grammar`` is honoured."""
        ...

    @property
    def edits_cache_in_place(self) -> bool:
        """Whether the KV cache can drop a span of the prompt, or replace one by new tokens
        evaluated in place, without reading what follows again (False: a changed summary makes
        the prompt after it be read again)."""
        ...

    def bos(self) -> list[int]:
        """The tokens that start every prompt (the BOS token when the model wants one)."""
        ...

    def tokenize(self, text: str, *, special: bool, at_start: bool = False) -> list[int]:
        """Token ids of ``text`` as it continues a prompt; see ``transcript.Tokenizer``."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``."""
        ...

    def generate(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        """Process the prompt (the concatenation of ``segments``) and stream a reply.

        Stops on the model's end-of-generation token, at ``request.max_tokens``, or when
        ``on_token`` returns False. ``on_progress`` hears how far prompt reading has come and
        may cancel it (GenerationCancelled). Raises BackendError when generation fails.
        """
        ...

    def generate_aside(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        """Like :meth:`generate`, for a prompt that is not the game's (the story-so-far
        summary): the game's cached prompt is kept where the backend can keep it apart."""
        ...

    def prepare(
        self, segments: Sequence[Sequence[int]], on_progress: ProgressCallback | None = None
    ) -> GenerationStats:
        """Make the KV cache hold the prompt ``segments`` without generating: a span that
        changed is evaluated in place (see :mod:`game.kvcache`), the rest read as needed.
        ``on_progress`` may cancel it (GenerationCancelled); what was done stays cached."""
        ...
