"""The transcript as token-counted segments, and the sliding window over it.

A prompt is the system segment, then whole player/model exchanges, then the new player segment
and the model's open prefix. Each segment is tokenized on its own and keeps its token ids, so the
tokens of a prompt are exactly the concatenation of its segments' tokens: a backend can then keep
its KV cache in step with the segments instead of re-reading the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from game.prompt import PromptFormat, Role, segment_pieces


class Tokenizer(Protocol):
    """What the transcript needs from a model: text to token ids and back."""

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text`` as it continues a prompt (no BOS, no added leading space).

        ``special`` lets marker text such as ``<|im_start|>`` become the model's special token;
        content is always tokenized with it off.
        """
        ...

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``."""
        ...


@dataclass(frozen=True)
class Segment:
    """One role's block of the prompt.

    Attributes:
        role: Whose block it is.
        text: The content as written by the author, player or model (markers not included).
        tokens: Every token of the block, markers included.
    """

    role: Role
    text: str
    tokens: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Exchange:
    """One player action and the model's reply to it.

    Attributes:
        player: The player's segment.
        reply: The model's closed segment (prefix, reply tokens as generated, suffix).
        narrative: The story part of the reply.
        choices: The options parsed from the reply; empty when it had none.
        cut_short: Whether the reply was stopped before the model finished it.
        window_start: The oldest exchange the window kept when this one was played (so that
            an undo can put the window back where it was); None when not known.
    """

    player: Segment
    reply: Segment
    narrative: str
    choices: list[str] = field(default_factory=list)
    cut_short: bool = False
    window_start: int | None = None

    @property
    def token_count(self) -> int:
        return len(self.player) + len(self.reply)


def tokenize_pieces(
    tokenizer: Tokenizer, fmt: PromptFormat, role: Role, text: str, *, closed: bool = True
) -> list[int]:
    """Token ids of one segment, markers tokenized as special tokens and content as plain text."""
    tokens: list[int] = []
    for piece in segment_pieces(fmt, role, text, closed=closed):
        tokens.extend(tokenizer.tokenize(piece.text, special=piece.is_marker))
    return tokens


def make_segment(tokenizer: Tokenizer, fmt: PromptFormat, role: Role, text: str) -> Segment:
    """A closed segment of ``role`` holding ``text``."""
    return Segment(role, text, tuple(tokenize_pieces(tokenizer, fmt, role, text)))


def reply_segment(
    tokenizer: Tokenizer, fmt: PromptFormat, text: str, generated: Sequence[int] | None
) -> Segment:
    """A closed model segment that keeps the token ids the model generated.

    Args:
        tokenizer: The model's tokenizer.
        fmt: The prompt format.
        text: The reply text.
        generated: The ids the model produced for exactly ``text``, or None to tokenize ``text``
            (after a stop string was trimmed, or when a save is loaded).
    """
    prefix = tokenizer.tokenize(fmt.model_prefix, special=True)
    if generated is None:
        body = tokenizer.tokenize(text, special=False) if text else []
    else:
        body = list(generated)
    suffix = tokenizer.tokenize(fmt.model_suffix, special=True) if fmt.model_suffix else []
    return Segment("model", text, tuple(prefix + body + suffix))


def fit_window(
    *,
    system_tokens: int,
    exchange_tokens: Sequence[int],
    pending_tokens: int,
    budget: int,
    start: int,
    headroom: int = 0,
) -> int:
    """Choose the oldest exchange to keep in the prompt.

    The system segment is always kept. Exchanges leave whole and oldest first, and only when the
    prompt would overflow: then enough of them leave to free ``headroom`` tokens beyond the
    overflow, so the window slides once every few turns instead of every turn (which would break
    the cached prompt each time).

    Args:
        system_tokens: Tokens of the pinned system segment.
        exchange_tokens: Tokens of each finished exchange, oldest first.
        pending_tokens: Tokens of the new player segment and the model's open prefix.
        budget: The most tokens the prompt may hold (context size less the reply's reserve).
        start: The oldest exchange kept last turn; the window never moves back.
        headroom: Extra tokens to free when the window has to slide.

    Returns:
        The index of the oldest exchange to keep; ``len(exchange_tokens)`` keeps none. The prompt
        may still overflow when the pending segment alone is too long; the caller cuts it.
    """
    start = min(max(start, 0), len(exchange_tokens))
    total = system_tokens + sum(exchange_tokens[start:]) + pending_tokens
    if total <= budget:
        return start
    target = max(budget - headroom, 0)
    while start < len(exchange_tokens) and total > target:
        total -= exchange_tokens[start]
        start += 1
    return start


def cut_to_tokens(tokenizer: Tokenizer, text: str, limit: int) -> str:
    """The longest start of ``text`` that tokenizes to at most ``limit`` tokens."""
    original = tokenizer.tokenize(text, special=False)
    tokens, cut = original, limit
    # Text cut at a token boundary can tokenize longer than the cut, so cut shorter until it fits.
    while len(tokens) > limit:
        if cut <= 0:
            return ""
        text = tokenizer.detokenize(original[:cut]).rstrip("\ufffd")
        tokens = tokenizer.tokenize(text, special=False)
        cut -= 1
    return text


def tokens_for_prefix(tokenizer: Tokenizer, tokens: Sequence[int], prefix: str) -> list[int]:
    """Token ids that spell ``prefix``, reusing the longest run of ``tokens`` that does.

    When a reply is cut back (to its narrative, say) and continued, keeping the ids the model
    generated keeps the prompt equal to what the KV cache holds; only the tail after the last
    whole token that fits is tokenized anew.
    """
    low, high = 0, len(tokens)
    # The text of tokens[:k] is a prefix of ``prefix`` for every k up to some bound: search it.
    while low < high:
        middle = (low + high + 1) // 2
        if prefix.startswith(tokenizer.detokenize(tokens[:middle])):
            low = middle
        else:
            high = middle - 1
    kept = list(tokens[:low])
    rest = prefix[len(tokenizer.detokenize(kept)) :]
    return kept + (tokenizer.tokenize(rest, special=False) if rest else [])
