"""Read the options a model ends its reply with. Pure functions, no I/O.

The Metharme model card's replies end with a bulleted block of three options. Models drift: they
number the options, bold them, wrap them over two lines, or add a line after them. The parser reads
the *last* list block of a reply and keeps everything else as narrative.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

MIN_CHOICES = 2
MAX_CHOICES = 6

# One list item, in the forms LLaMA-family chat models (Metharme, Pygmalion-2, LLaMA-2-chat)
# write: a bullet ("-", "*", "•", "+", "> "), "1." / "1)" / "(1)" / "[1]" / "1:" / "1 -" /
# "1️⃣", "a)" / "A." / "(a)" / "A:", any of them after "Option" or "Choice" ("Option 2: ...",
# "Choice B - ..."), and the label possibly in bold ("**Option 1:** ..."); then the item's text.
_ITEM = re.compile(
    r"""^[ \t]*(?:\*\*|__)?
    (?:
        (?P<bullet>[•\-*–—·●▪◦‣+>])
      | (?:(?:option|choice)[ \t]*)?[(\[]?(?P<number>\d{1,2})
        (?:\ufe0f?\u20e3|[.):\]]|[ \t]+[-–—])
      | (?:(?:option|choice)[ \t]*)?[(\[]?(?P<letter>[A-Ha-h])(?:[.):\]]|[ \t]+[-–—])
    )
    (?:\*\*|__)?
    [ \t]+(?P<text>\S.*)$""",
    re.VERBOSE | re.IGNORECASE,
)
# Emphasis markup that models wrap options in: **bold**, __bold__, *italic*, _italic_, `code`.
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
# A short heading such as "Options:" or "**What do you do?**" left just above the block.
_HEADING = re.compile(r"^[ \t]*[*_#>]*[ \t]*[\w ,'’]{1,40}:[ \t]*[*_]*[ \t]*$")
_SENTENCE_END = re.compile(r"[.!?:;…\"”’')\]]$")


@dataclass(frozen=True)
class ParsedReply:
    """A model reply split into its story text and its options.

    Attributes:
        narrative: The story text: everything but the option block (text after it included).
        choices: The options, cleaned; empty when the reply has no usable block.
    """

    narrative: str
    choices: list[str] = field(default_factory=list)


@dataclass
class _Item:
    kind: str
    first_line: int
    last_line: int
    text: str


def _match_item(line: str) -> tuple[str, str] | None:
    match = _ITEM.match(line)
    if match is None:
        return None
    kind = next(name for name in ("bullet", "number", "letter") if match.group(name))
    return kind, match.group("text").strip()


def _continues_item(line: str, item_text: str) -> bool:
    """Whether ``line`` is the wrapped second line of the item above it."""
    if not line.strip() or _match_item(line) is not None:
        return False
    if line[:1] in (" ", "\t"):
        return True
    # An unindented line continues the item only when the item broke off mid-sentence.
    return not _SENTENCE_END.search(item_text) and line.lstrip()[:1].islower()


def clean_choice(text: str) -> str:
    """Strip markdown emphasis and surrounding space from one option."""
    previous = None
    while previous != text:
        previous, text = text, _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split()).strip(" *_`")


def _items(lines: list[str]) -> list[_Item]:
    items: list[_Item] = []
    index = 0
    while index < len(lines):
        found = _match_item(lines[index])
        if found is None:
            index += 1
            continue
        kind, text = found
        item = _Item(kind, index, index, text)
        index += 1
        while index < len(lines) and _continues_item(lines[index], item.text):
            item.text = f"{item.text} {lines[index].strip()}"
            item.last_line = index
            index += 1
        items.append(item)
    return items


def _last_block(lines: list[str], items: list[_Item]) -> list[_Item]:
    """The last run of items of one kind separated by nothing but blank lines."""
    block = [items[-1]]
    for item in reversed(items[:-1]):
        between = lines[item.last_line + 1 : block[0].first_line]
        if item.kind != block[0].kind or any(line.strip() for line in between):
            break
        block.insert(0, item)
    return block


def parse_reply(text: str) -> ParsedReply:
    """Split a reply into narrative and choices.

    The last bulleted or numbered block counts when it has 2 to 6 items. Items that wrap onto a
    following line are joined, emphasis is stripped, and text after the block stays in the
    narrative. With no usable block, ``choices`` is empty and the narrative is the whole reply.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    items = _items(lines)
    if not items:
        return ParsedReply(text.strip())
    block = _last_block(lines, items)
    choices = [choice for choice in (clean_choice(item.text) for item in block) if choice]
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        return ParsedReply(text.strip())

    before = lines[: block[0].first_line]
    while before and not before[-1].strip():
        before.pop()
    if before and _HEADING.match(before[-1]):
        before.pop()
    after = "\n".join(lines[block[-1].last_line + 1 :]).strip()
    narrative = "\n".join(before).strip()
    if after:
        narrative = f"{narrative}\n\n{after}" if narrative else after
    return ParsedReply(narrative, choices)


def resolve_action(text: str, choices: list[str]) -> str:
    """The action a player's input stands for: a choice's text for its number, else the text."""
    stripped = text.strip()
    # Decimal digits (any script's), and few: "²" is a digit to isdigit() but not to int(),
    # and int() refuses a line of thousands of digits.
    short = stripped.isdecimal() and len(stripped) <= 3
    if short and 1 <= int(stripped) <= len(choices):
        return choices[int(stripped) - 1]
    return stripped


def normalize_choice(text: str) -> str:
    """An option reduced for comparison: lower case, letters and digits, single spaces."""
    kept = "".join(char if char.isalnum() else " " for char in text.casefold())
    return " ".join(kept.split())


def are_near_duplicates(first: str, second: str, *, threshold: float = 0.85) -> bool:
    """Whether two options say (nearly) the same thing once case and punctuation are ignored."""
    a, b = normalize_choice(first), normalize_choice(second)
    if a == b:
        return True
    return difflib.SequenceMatcher(None, a, b).ratio() >= threshold


def distinct_count(choices: list[str]) -> int:
    """How many of ``choices`` are not near-duplicates of an earlier one."""
    kept: list[str] = []
    for choice in choices:
        if not any(are_near_duplicates(choice, other) for other in kept):
            kept.append(choice)
    return len(kept)


def narrative_before_options(text: str) -> str:
    """The reply up to the first line that starts an option (``- ``), without trailing space.

    Under the reply grammar no narrative line starts with ``-``, so this is where the option
    block begins, complete or not.
    """
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("- "):
            return "\n".join(lines[:index]).rstrip()
    return text.rstrip()


_LAST_SENTENCE_END = re.compile(r"""[.!?…]["'”’)\]]*(?=\s|$)""")


def trim_to_sentence(text: str) -> str:
    """``text`` cut after its last complete sentence, for a narrative that ran out of tokens
    mid-sentence. Unchanged when that would drop more than half of it."""
    text = text.rstrip()
    ends = list(_LAST_SENTENCE_END.finditer(text))
    if not ends or ends[-1].end() < len(text) // 2:
        return text
    return text[: ends[-1].end()]
