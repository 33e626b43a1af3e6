"""What the story remembers beyond the window: the player's memory ("plot essentials"), the
author's note, and the story-so-far summaries the model writes as exchanges leave the window.
Pure data and text; the session places them in the prompt, the controller writes summaries
while the model is idle.

Where they sit in a prompt (see ``Session``):

    system prompt | memory | story so far | kept exchanges ... | lore | author's note | action

The memory and the summary are pinned after the system prompt; the author's note sits just
before the player's action each turn, like triggered lore, so it costs only its own tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

# Tokens a summary may take when the scenario does not say.
DEFAULT_SUMMARY_BUDGET = 200
# The most characters of the memory, the author's note and a summary (a scenario's defaults
# are held to the same).
MEMORY_LIMITS = {"memory": 4000, "note": 1000, "summary": 4000}
# The most summaries a game keeps (older ones are only needed after a long undo).
MAX_SUMMARIES = 50
MEMORY_HEADER = "Memory (facts of this story that must not be forgotten):"
SUMMARY_HEADER = "The story so far:"
# What the summary request says when there is no summary yet (small models echo it).
NOTHING_YET = "(nothing yet)"
NOTE_PREFIX = "[Author's note: "
NOTE_SUFFIX = "]"


@dataclass(frozen=True)
class Summary:
    """A story-so-far summary of the first ``through`` exchanges."""

    through: int
    text: str


@dataclass
class StoryMemory:
    """A game's memory.

    Attributes:
        memory: Text pinned after the system prompt, the player's (the scenario's by default).
        note: The author's note placed before each action.
        summaries: Summaries written so far, oldest first (``through`` ascending).
        auto_summary: Whether the model writes summaries as exchanges leave the window.
    """

    memory: str = ""
    note: str = ""
    summaries: list[Summary] = field(default_factory=list)
    auto_summary: bool = True

    def copy(self) -> StoryMemory:
        return replace(self, summaries=list(self.summaries))

    def active(self, window_start: int) -> Summary | None:
        """The summary the prompt holds for a window starting at ``window_start``: the newest
        covering no exchange still in the window (after an undo an older one serves again)."""
        for summary in reversed(self.summaries):
            if summary.through <= window_start:
                return summary
        return None

    def add(self, summary: Summary) -> None:
        """Keep ``summary`` (those covering as much or more are replaced)."""
        kept = [old for old in self.summaries if old.through < summary.through]
        self.summaries = [*kept, summary][-MAX_SUMMARIES:]

    def forget_after(self, exchanges: int) -> None:
        """Drop summaries covering exchanges that no longer exist (a new turn after undo)."""
        self.summaries = [old for old in self.summaries if old.through <= exchanges]


def memory_text(memory: str) -> str:
    """The memory segment's text, or "" when there is no memory."""
    return f"{MEMORY_HEADER}\n{memory.strip()}" if memory.strip() else ""


def summary_text(summary: Summary | None) -> str:
    """The story-so-far segment's text, or "" when there is none."""
    if summary is None or not summary.text.strip():
        return ""
    return f"{SUMMARY_HEADER}\n{summary.text.strip()}"


def note_text(note: str) -> str:
    """The author's note segment's text, or "" when there is no note."""
    return f"{NOTE_PREFIX}{note.strip()}{NOTE_SUFFIX}" if note.strip() else ""


@dataclass(frozen=True)
class SummaryRequest:
    """The prompt of one summary: a system instruction and the user's text to summarize."""

    instruction: str
    material: str


def summary_request(
    title: str,
    old_summary: str,
    events: Sequence[tuple[str, str]],
    budget_tokens: int,
    memory: str = "",
) -> SummaryRequest:
    """What the model is asked to write a new summary from.

    Args:
        title: The scenario's title.
        old_summary: The story so far before ``events`` ("" at first).
        events: ``(player's action, narration)`` of each exchange that left the window.
        budget_tokens: The summary's token budget (about 3/4 of a word a token).
        memory: The player's memory, so the summary need not repeat it.
    """
    words = max(budget_tokens * 3 // 4, 20)
    instruction = (
        f"You keep the record of a text adventure, {title}. Rewrite the story so far so that "
        f"it includes the new events. Keep names, places, objects, numbers, promises, wounds "
        f"and open threads; drop chatter. Write plain past-tense prose in at most {words} "
        "words, no lists, no options, nothing after the summary."
    )
    parts = []
    if memory.strip():
        parts.append(f"Already remembered (do not repeat):\n{memory.strip()}")
    parts.append(f"The story so far:\n{old_summary.strip() or NOTHING_YET}")
    lines = []
    for action, narration in events:
        lines.append(f"> {action.strip()}\n{narration.strip()}")
    parts.append("New events:\n" + "\n\n".join(lines))
    parts.append("Write the new story so far.")
    return SummaryRequest(instruction, "\n\n".join(parts))


def clean_summary(text: str) -> str:
    """A generated summary as kept: no option lines, no headers the model echoed, no trailing
    unfinished sentence when there is a finished one."""
    lines = [line for line in text.strip().splitlines() if not line.lstrip().startswith("- ")]
    body = "\n".join(lines).strip()
    for header in (SUMMARY_HEADER, "The new story so far:", "Story so far:", NOTHING_YET):
        if body.lower().startswith(header.lower()):
            body = body[len(header) :].strip()
    end = max(body.rfind("."), body.rfind("!"), body.rfind("?"), body.rfind('"'))
    if end > len(body) // 2:
        body = body[: end + 1]
    return body.strip()
