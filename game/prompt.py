"""Prompt formats as data, and the pure functions that render a transcript in one.

The Metharme model card is the authority for the default format::

    <|system|>{system}<|user|>{player}<|model|>{reply}<|user|>{player}<|model|>

No separators and no newlines are added between roles, and the end-of-sequence token the model
emits is not written into the text. Other models need other formats (the embedded SmolLM2 model is
ChatML); a format is only role prefixes, suffixes and stop strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "model"]

# Inserted after the first character of a role marker found inside untrusted text, so that the
# text reads the same to a person but can never be parsed as a marker by the model's tokenizer.
_BREAK = "\u200b"


@dataclass(frozen=True)
class PromptFormat:
    """How one model family expects roles to be written.

    Attributes:
        name: The name players and config files use (``metharme``, ``chatml``).
        system_prefix: Text that opens the system block.
        system_suffix: Text that closes the system block.
        user_prefix: Text that opens a player turn.
        user_suffix: Text that closes a player turn.
        model_prefix: Text that opens a model turn; a prompt ends with it when the model is to
            speak.
        model_suffix: Text that closes a finished model turn.
        stop: Strings that end generation when the model writes them.
        markers: Strings that must never appear in player or scenario text as written.
    """

    name: str
    system_prefix: str
    system_suffix: str
    user_prefix: str
    user_suffix: str
    model_prefix: str
    model_suffix: str
    stop: tuple[str, ...]
    markers: tuple[str, ...]

    def prefix(self, role: Role) -> str:
        """The text that opens a segment of this role."""
        return {"system": self.system_prefix, "user": self.user_prefix, "model": self.model_prefix}[
            role
        ]

    def suffix(self, role: Role) -> str:
        """The text that closes a finished segment of this role."""
        return {"system": self.system_suffix, "user": self.user_suffix, "model": self.model_suffix}[
            role
        ]

    @property
    def lead(self) -> str:
        """The text every role prefix starts with (``<|`` for Metharme).

        Where markers are plain text to the tokenizer, the end of one segment's text merges with
        the start of the next marker (LLaMA's vocabulary writes ``door.<|model|>`` as ``door``
        ``.<`` ``|`` ...). A segment's tokens then cover its text *and* this lead, which is the
        same whatever segment follows, so that each segment's tokens are those of the whole
        prompt over its span and still never depend on their neighbours.
        """
        first, *others = (self.system_prefix, self.user_prefix, self.model_prefix)
        size = 0
        while size < len(first) and all(other[size : size + 1] == first[size] for other in others):
            size += 1
        return first[:size]


METHARME = PromptFormat(
    name="metharme",
    system_prefix="<|system|>",
    system_suffix="",
    user_prefix="<|user|>",
    user_suffix="",
    model_prefix="<|model|>",
    model_suffix="",
    # Some GGUF conversions of Metharme / Pygmalion write the end of a reply as the text
    # "</s>" instead of the EOS token: it ends the reply too and is never shown.
    stop=("<|user|>", "<|system|>", "<|model|>", "</s>"),
    markers=("<|system|>", "<|user|>", "<|model|>"),
)

CHATML = PromptFormat(
    name="chatml",
    system_prefix="<|im_start|>system\n",
    system_suffix="<|im_end|>\n",
    user_prefix="<|im_start|>user\n",
    user_suffix="<|im_end|>\n",
    model_prefix="<|im_start|>assistant\n",
    model_suffix="<|im_end|>\n",
    stop=("<|im_end|>", "<|im_start|>"),
    markers=("<|im_start|>", "<|im_end|>"),
)

FORMATS: dict[str, PromptFormat] = {fmt.name: fmt for fmt in (METHARME, CHATML)}
DEFAULT_FORMAT = METHARME.name


class UnknownFormatError(ValueError):
    """Raised for a format name that is not one of :data:`FORMATS`."""


def get_format(name: str) -> PromptFormat:
    """Look a format up by name (case-insensitive)."""
    try:
        return FORMATS[name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise UnknownFormatError(f"unknown prompt format {name!r} (known: {known})") from None


def format_for_chat_template(template: str | None) -> str | None:
    """Guess the format a GGUF's embedded chat template describes.

    Args:
        template: The Jinja text of ``tokenizer.chat_template``, or None when the file has none.

    Returns:
        A format name, or None when the template matches none of the known formats.
    """
    if not template:
        return None
    if "<|im_start|>" in template:
        return CHATML.name
    if "<|model|>" in template and "<|user|>" in template:
        return METHARME.name
    return None


def detect_format(template: str | None, vocabulary: str | None) -> tuple[str, str]:
    """The format a model file calls for, and why, for the log and the status line.

    Args:
        template: The GGUF's ``tokenizer.chat_template``, or None.
        vocabulary: The GGUF's tokenizer model (``llama`` for SentencePiece, ``gpt2`` for BPE),
            or None when not known.

    Returns:
        ``(format name, reason)``. A file with no template (or one of no known format) whose
        vocabulary is LLaMA's is a LLaMA fine-tune such as Metharme 7B or Pygmalion-2: Metharme.
    """
    guessed = format_for_chat_template(template)
    if guessed:
        return guessed, "chat template"
    llama = vocabulary == "llama"
    if not template:
        return METHARME.name, "no chat template, LLaMA vocabulary" if llama else "default"
    return METHARME.name, "unknown chat template" + (", LLaMA vocabulary" if llama else "")


def neutralize(text: str, fmt: PromptFormat) -> str:
    """Make role markers inside untrusted text harmless.

    A player who types ``<|system|>`` writes text, not a new role: each marker of ``fmt`` found in
    ``text`` gets a zero-width space after its first character, which a tokenizer cannot read as
    the marker.
    """
    for marker in fmt.markers:
        if marker in text:
            text = text.replace(marker, marker[0] + _BREAK + marker[1:])
    return text


def contains_marker(text: str, fmt: PromptFormat) -> str | None:
    """Return the first role marker of ``fmt`` that ``text`` contains, or None."""
    return next((marker for marker in fmt.markers if marker in text), None)


@dataclass(frozen=True)
class Piece:
    """A run of prompt text that is tokenized one way: markers as special tokens, content not."""

    text: str
    is_marker: bool


def segment_pieces(fmt: PromptFormat, role: Role, text: str, *, closed: bool = True) -> list[Piece]:
    """Split one segment (a role's prefix, its text and its suffix) into pieces.

    Args:
        fmt: The prompt format.
        role: Whose segment this is.
        text: The content; it is neutralized here.
        closed: Whether the suffix is written. A model turn being generated is open.
    """
    pieces = [Piece(fmt.prefix(role), True)]
    if text:
        pieces.append(Piece(neutralize(text, fmt), False))
    suffix = fmt.suffix(role)
    if closed and suffix:
        pieces.append(Piece(suffix, True))
    return [piece for piece in pieces if piece.text]


def segment_text(fmt: PromptFormat, role: Role, text: str, *, closed: bool = True) -> str:
    """The exact prompt text of one segment."""
    return "".join(piece.text for piece in segment_pieces(fmt, role, text, closed=closed))


def render(format_name: str, system: str, turns: Sequence[tuple[str, str]]) -> str:
    """Render a whole prompt as text.

    Args:
        format_name: A key of :data:`FORMATS`.
        system: The system prompt, pinned at the start.
        turns: ``(role, text)`` pairs in order, role ``"user"`` or ``"model"``; a ``"system"``
            turn is a system segment in mid-prompt (triggered lore).

    Returns:
        The exact prompt. When the last turn is the player's, it ends with the model's prefix so
        that the model speaks next.
    """
    fmt = get_format(format_name)
    parts = [segment_text(fmt, "system", system)]
    for role, text in turns:
        if role not in ("user", "model", "system"):
            raise ValueError(f"turn role must be 'user', 'model' or 'system', not {role!r}")
        parts.append(segment_text(fmt, role, text))  # type: ignore[arg-type]
    if turns and turns[-1][0] == "user":
        parts.append(fmt.model_prefix)
    return "".join(parts)
