"""The context view: what the model reads next turn, segment by segment, read-only.

Each part of the prompt (system prompt, memory, story so far, the turns in the window, lore,
author's note, the action being typed) with its token count and the start of its text; the
total against the prompt budget and the context; which turns have left the window, which of
those the story so far covers, and whether a summary is still to be written.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from game.session import PromptPart, Session

PREVIEW_CHARS = 60


def preview(part: PromptPart, width: int = PREVIEW_CHARS) -> str:
    """The start of the part's own text on one line (a turn as its action; the memory and the
    story so far without the header every one of them starts with)."""
    text = part.text
    if part.kind in ("memory", "summary") and "\n" in text:
        text = text.split("\n", 1)[1]
    elif part.kind == "exchange":
        text = f"> {text}"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@dataclass(frozen=True)
class ContextReport:
    """What the context view shows (taken on the UI thread when it opens)."""

    parts: list[PromptPart]
    total: int
    budget: int
    n_ctx: int
    window_start: int
    covered: int
    pending: bool
    auto_summary: bool
    writing: bool

    @classmethod
    def of(cls, session: Session, action: str | None, *, writing: bool = False) -> ContextReport:
        parts = session.context_view(action)
        active = session.memory.active(session.window_start)
        return cls(
            parts=parts,
            total=sum(part.tokens for part in parts),
            budget=session.budget,
            n_ctx=session.backend.n_ctx,
            window_start=session.window_start,
            covered=active.through if active else 0,
            pending=session.summary_pending,
            auto_summary=session.memory.auto_summary,
            writing=writing,
        )

    def lines(self) -> list[str]:
        """The facts above the table, one a line."""
        share = self.total / self.budget if self.budget else 0.0
        lines = [
            f"Next prompt: {self.total} tokens of {self.budget} for the prompt ({share:.0%}); "
            f"context {self.n_ctx}, the rest is kept for the reply."
        ]
        left = self.window_start
        if left == 0:
            lines.append("Every turn is still in the window.")
        else:
            turns = "turn 1 has" if left == 1 else f"turns 1–{left} have"
            lines.append(f"{turns.capitalize()} left the window.")
            if self.covered >= left:
                lines.append(f"The story so far covers all of them (turns 1–{self.covered}).")
            elif self.covered:
                lines.append(
                    f"The story so far covers turns 1–{self.covered}; "
                    f"turns {self.covered + 1}–{left} are not in it."
                )
            else:
                lines.append("No story so far covers them.")
        if self.writing:
            lines.append("A summary is being written now.")
        elif self.pending:
            lines.append("A summary is pending: it is written while you read.")
        elif not self.auto_summary:
            lines.append("Automatic summaries are off (F6 turns them on).")
        return lines


def _count(tokens: int) -> Text:
    return Text(str(tokens), justify="right")


class ContextScreen(ModalScreen[None]):
    """The next turn's prompt, part by part; Escape closes."""

    DEFAULT_CSS = """
    ContextScreen {
        align: center middle;
    }
    ContextScreen #context-dialog {
        width: 95%;
        max-width: 120;
        height: 90%;
        padding: 0 1;
        border: thick $accent;
        background: $surface;
    }
    ContextScreen #context-facts {
        height: auto;
        margin-bottom: 1;
    }
    ContextScreen DataTable {
        height: 1fr;
    }
    ContextScreen #context-keys {
        color: $text-muted;
    }
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, report: ContextReport) -> None:
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        with Vertical(id="context-dialog"):
            yield Static("\n".join(self.report.lines()), id="context-facts", markup=False)
            yield DataTable(id="context-parts", cursor_type="row", zebra_stripes=True)
            yield Static("Escape closes", id="context-keys")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("part", "what", "tokens", "starts with")
        for part in self.report.parts:
            table.add_row(part.kind, part.label, _count(part.tokens), preview(part))
        table.add_row("", "total", _count(self.report.total), "")
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
