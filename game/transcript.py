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

from game.prompt import PromptFormat, Role, neutralize, segment_pieces


class Tokenizer(Protocol):
    """What the transcript needs from a model: text to token ids and back."""

    def tokenize(self, text: str, *, special: bool, at_start: bool = False) -> list[int]:
        """Token ids of ``text`` as it continues a prompt (no BOS, no added leading space).

        ``special`` lets marker text such as ``<|im_start|>`` become the model's special token;
        content is always tokenized with it off. ``at_start`` tokenizes ``text`` as the start
        of a prompt instead (after the BOS, where a SentencePiece vocabulary adds its leading
        space).
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


def seam_lead(tokenizer: Tokenizer, fmt: PromptFormat) -> str:
    """The text each segment's tokens end with, or "" when segments never merge.

    Where the format's markers are special tokens (ChatML on SmolLM2), content and markers are
    tokenized apart and nothing crosses a seam. Where they are plain text (Metharme on LLaMA's
    vocabulary), the end of a segment merges with the next marker (``door.<`` is one token),
    so a segment is tokenized together with the start every marker shares (``<|``): its tokens
    are then exactly those of the whole rendered prompt over its span, whatever follows it.
    """
    lead = fmt.lead
    if not lead:
        return ""
    for marker in fmt.markers:
        if tokenizer.tokenize(marker, special=True) != tokenizer.tokenize(marker, special=False):
            return ""
    return lead


def tokenize_pieces(
    tokenizer: Tokenizer,
    fmt: PromptFormat,
    role: Role,
    text: str,
    *,
    closed: bool = True,
    at_start: bool = False,
) -> list[int]:
    """Token ids of one segment.

    Markers that are special tokens are tokenized as such and content as plain text, piece by
    piece. Markers that are plain text are tokenized with the content as one text, and a closed
    segment takes the next marker's :func:`seam_lead` with it (see there); its own prefix then
    starts after the lead, which the segment before it holds, unless it opens the prompt
    (``at_start``).
    """
    lead = seam_lead(tokenizer, fmt)
    if not lead:
        tokens: list[int] = []
        for index, piece in enumerate(segment_pieces(fmt, role, text, closed=closed)):
            first = at_start and index == 0
            tokens.extend(tokenizer.tokenize(piece.text, special=piece.is_marker, at_start=first))
        return tokens
    prefix = fmt.prefix(role)
    whole = (prefix if at_start else prefix[len(lead) :]) + neutralize(text, fmt)
    if closed:
        whole += fmt.suffix(role) + lead
    return tokenizer.tokenize(whole, special=False, at_start=at_start)


def open_model_tokens(tokenizer: Tokenizer, fmt: PromptFormat) -> list[int]:
    """Tokens of the model's open prefix, which ends every prompt (after the lead that the
    segment before it holds, where segments merge)."""
    return tokenize_pieces(tokenizer, fmt, "model", "", closed=False)


def closing_tokens(tokenizer: Tokenizer, fmt: PromptFormat) -> list[int]:
    """The tokens a finished model segment closes with, on their own: its suffix, and the next
    marker's lead where segments merge (what a reply costs the next prompt beyond the model's
    own tokens; the seam may merge one of the reply's tokens with them)."""
    lead = seam_lead(tokenizer, fmt)
    if lead:
        return tokenizer.tokenize(fmt.model_suffix + lead, special=False)
    return tokenizer.tokenize(fmt.model_suffix, special=True) if fmt.model_suffix else []


def make_segment(tokenizer: Tokenizer, fmt: PromptFormat, role: Role, text: str) -> Segment:
    """A closed segment of ``role`` holding ``text``."""
    return Segment(role, text, tuple(tokenize_pieces(tokenizer, fmt, role, text)))


# How many of a reply's last tokens (the model's, and the tokenizer's) are searched for a place
# where the two split the text alike.
SEAM_REACH = 16


def _boundaries(tokenizer: Tokenizer, text: str, tokens: Sequence[int]) -> dict[int, int]:
    """Where the last :data:`SEAM_REACH` tokens of ``tokens`` (which spell ``text``) start:
    character offset -> token index. An offset inside a character (a byte token) is left out."""
    found: dict[int, int] = {}
    for index in range(len(tokens), max(len(tokens) - SEAM_REACH, 0) - 1, -1):
        head = tokenizer.detokenize(tokens[:index])
        if text.startswith(head):
            found.setdefault(len(head), index)
    return found


def close_reply(tokenizer: Tokenizer, text: str, body: Sequence[int], closing: str) -> list[int]:
    """The reply's tokens followed by ``closing`` (its suffix and the next marker's lead), with
    the seam between them tokenized as the whole prompt's text would be.

    The reply and ``closing`` are tokenized together; the model's own tokens are kept up to the
    last place where they and that tokenization split the text alike, and the tokenization
    follows from there (``door.`` then ``<|`` becomes ``door`` ``.<`` ``|``). The marker's
    tokens are then exactly those the text gives, and the seam costs what changed: one token
    as a rule, more where the model split its last word otherwise than the tokenizer does.
    """
    if not closing:
        return list(body)
    whole = tokenizer.tokenize(text + closing, special=False)
    ours = _boundaries(tokenizer, text, body)
    theirs = _boundaries(tokenizer, text + closing, whole)
    common = [offset for offset in ours if offset in theirs and offset <= len(text)]
    if not common:
        return whole  # no shared split within reach: the reply is tokenized again in full
    offset = max(common)
    return list(body[: ours[offset]]) + whole[theirs[offset] :]


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
    prefix = open_model_tokens(tokenizer, fmt)
    if generated is None:
        body = tokenizer.tokenize(text, special=False) if text else []
    else:
        body = list(generated)
    lead = seam_lead(tokenizer, fmt)
    if lead:
        return Segment("model", text, tuple(prefix + close_reply(tokenizer, text, body, lead)))
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
