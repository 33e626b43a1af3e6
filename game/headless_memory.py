"""What the headless game says about its memory: the ``/memory``, ``/note``, ``/summary`` and
``/context`` commands' arguments read, and their answers written as text or as JSON. Pure
functions of a session; :mod:`game.headless` runs them and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from game.session import Session
from game.summarizer import BackgroundOutcome
from game.textsafety import for_terminal

# What clears a text: `/memory -`, `/note clear`, `/summary none`.
CLEAR_WORDS = frozenset({"-", "clear", "none"})
# Characters of a segment's text shown on its line of `/context`.
PREVIEW_CHARS = 48


@dataclass(frozen=True)
class MemoryEdit:
    """What a `/memory`, `/note` or `/summary` line asks for."""

    action: Literal["show", "set", "append", "on", "off"]
    text: str = ""


def parse_edit(command: str, argument: str) -> MemoryEdit:
    """Read the argument of ``/memory``, ``/note`` or ``/summary``.

    ``""`` shows; ``-``, ``clear`` or ``none`` clears; ``/memory +TEXT`` adds a line to the
    memory; ``/summary on|off`` turns the model's summaries on or off; anything else is the new
    text.
    """
    text = argument.strip()
    word = text.lower()
    if not text:
        return MemoryEdit("show")
    if word in CLEAR_WORDS:
        return MemoryEdit("set", "")
    if command == "/summary" and word in ("on", "off"):
        return MemoryEdit(word)  # type: ignore[arg-type]
    if command == "/memory" and text.startswith("+"):
        line = text[1:].strip()
        return MemoryEdit("append", line) if line else MemoryEdit("show")
    return MemoryEdit("set", text)


def turns_label(first: int, last: int) -> str:
    """``turn 3`` or ``turns 1-6``."""
    return f"turn {first}" if first == last else f"turns {first}-{last}"


def _one_line(text: str, limit: int | None = None) -> str:
    line = for_terminal(" ".join(text.split()), one_line=True)
    if limit is not None and len(line) > limit:
        line = line[: limit - 3] + "..."
    return line


def segment_tokens(session: Session, kind: str) -> int:
    """Tokens the prompt's ``kind`` segment (memory, summary or note) takes now."""
    if kind == "note":
        note = session.note_segment()
        return len(note) if note is not None else 0
    return sum(len(segment) for name, segment in session.pinned_parts() if name == kind)


def memory_lines(session: Session) -> list[str]:
    memory = session.memory.memory
    if not memory:
        return ["(no memory: /memory TEXT sets it, /memory +TEXT adds a line)"]
    tokens = segment_tokens(session, "memory")
    lines = [f"Memory ({tokens} tokens, read after the system prompt every turn):"]
    return lines + [f"  {for_terminal(line, one_line=True)}" for line in memory.splitlines()]


def note_lines(session: Session) -> list[str]:
    note = session.note_segment()
    if note is None:
        return ["(no author's note: /note TEXT sets it)"]
    text = for_terminal(session.memory.note, one_line=True)
    return [f"Author's note ({len(note)} tokens, read just before each action): {text}"]


def pending_line(session: Session, *, running: bool) -> str | None:
    """What is not summarized yet, and what happens to it; None when nothing has left the
    window unsummarized."""
    active = session.memory.active(session.window_start)
    covered = active.through if active else 0
    if session.window_start <= covered:
        return None
    gap = turns_label(covered + 1, session.window_start)
    if not session.memory.auto_summary:
        return f"{gap} left the window unsummarized: summaries are off (/summary on)."
    if running:
        return f"{gap} left the window: the story so far is being written now."
    return f"{gap} left the window: the story so far is written at the next pause."


def summary_lines(session: Session, *, running: bool) -> list[str]:
    active = session.memory.active(session.window_start)
    state = "on" if session.memory.auto_summary else "off"
    if active is None or not active.text:
        lines = [f"(no story so far yet; automatic summaries are {state})"]
    else:
        covers = turns_label(1, active.through) if active.through else "no turn yet"
        tokens = segment_tokens(session, "summary")
        lines = [
            f"The story so far (covers {covers}; {tokens} tokens; automatic summaries {state}):",
            f"  {_one_line(active.text)}",
        ]
    pending = pending_line(session, running=running)
    return lines + ([pending] if pending else [])


def context_lines(session: Session, action: str | None, *, running: bool) -> list[str]:
    """The next turn's prompt segment by segment (see ``Session.context_view``)."""
    parts = session.context_view(action)
    total = sum(part.tokens for part in parts)
    budget = session.budget
    lines = [
        f"The next turn's prompt: {total} of {budget} tokens "
        f"(n_ctx {session.backend.n_ctx}, {session.max_tokens} kept for the reply)"
    ]
    width = max(len(part.label) for part in parts)
    active = session.memory.active(session.window_start)
    for part in parts:
        preview = part.text
        if part.kind == "summary" and active is not None:
            preview = f"[{turns_label(1, active.through)}] {active.text}"
        elif part.kind == "memory":
            preview = session.memory.memory
        elif part.kind == "note":
            preview = session.memory.note
        elif part.kind == "exchange":
            preview = f"> {part.text}"
        elif part.kind == "system":
            preview = ""
        lines.append(
            f"  {part.label:<{width}} {part.tokens:>6}  {_one_line(preview, PREVIEW_CHARS)}"
        )
    if session.window_start:
        lines.append(f"{turns_label(1, session.window_start)} left the window.")
    pending = pending_line(session, running=running)
    if pending:
        lines.append(pending)
    return lines


def context_json(session: Session, action: str | None, *, running: bool) -> dict[str, object]:
    """:func:`context_lines` as the JSON object ``/context`` prints with ``--json``."""
    parts = session.context_view(action)
    active = session.memory.active(session.window_start)
    return {
        "event": "context",
        "parts": [
            {"kind": part.kind, "label": part.label, "tokens": part.tokens, "text": part.text}
            for part in parts
        ],
        "tokens": sum(part.tokens for part in parts),
        "budget": session.budget,
        "n_ctx": session.backend.n_ctx,
        "window_start": session.window_start,
        "summary_through": active.through if active else 0,
        "summary_pending": session.summary_pending,
        "summary_running": running,
        "auto_summary": session.memory.auto_summary,
    }


def summary_event(outcome: BackgroundOutcome, through: int) -> dict[str, object]:
    """A round of background work that was to write a summary, as the JSON event printed
    with ``--json``; ``through`` is what it was to cover when it was not written."""
    written = outcome.summary is not None
    stats = outcome.summary_stats
    # Stopped before it began (the player acted at once): nothing written, nothing failed.
    cancelled = outcome.cancelled or (not written and stats is None and not outcome.problem)
    return {
        "event": "summary",
        "through": outcome.through if written else through,
        "written": written,
        "text": outcome.summary,
        # What the model wrote (told without asking the backend: a turn may be using it).
        "tokens": stats.generated_tokens if stats else 0,
        "seconds": round(outcome.seconds, 4),
        "evaluated_tokens": outcome.evaluated_tokens,
        "cancelled": cancelled,
        "problem": outcome.problem,
    }
