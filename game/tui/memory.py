"""The memory screen: what the story keeps beyond the window, for the player to edit.

The memory ("plot essentials", pinned after the system prompt), the author's note (placed just
before each action), the story so far (the model's summary of the turns that left the window,
or the player's own) and whether the model writes it. Saving goes through the controller in a
worker thread (it may wait for a summary being written to stop, and it saves the game); a text
the game cannot keep is one line, and the screen stays open with everything typed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, Static, Switch, TextArea

from game.controller import GameBusyError, GameController, MemoryTextError
from game.session import Session


@dataclass(frozen=True)
class MemoryTexts:
    """What the screen edits."""

    memory: str
    note: str
    summary: str
    auto_summary: bool

    @classmethod
    def of(cls, session: Session) -> MemoryTexts:
        memory = session.memory
        active = memory.active(session.window_start)
        return cls(memory.memory, memory.note, active.text if active else "", memory.auto_summary)


def covered_text(session: Session) -> str:
    """Which turns the story so far covers, and which left the window uncovered."""
    left = session.window_start
    active = session.memory.active(left)
    through = active.through if active else 0
    if left == 0:
        if active is not None:
            return "Story so far (your own; no turn has left the window yet):"
        return "Story so far (no turn has left the window yet; you may write one):"
    covers = f"covers turns 1–{through}" if through else "covers no turn yet"
    if through >= left:
        return f"Story so far ({covers}, all that left the window):"
    waiting = "to be written" if session.memory.auto_summary else "summaries are off"
    return f"Story so far ({covers}; turns {through + 1}–{left} left the window, {waiting}):"


def _one_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:1].upper() + text[1:]


class MemoryScreen(ModalScreen[bool]):
    """Edit the memory, the author's note and the story so far; ctrl+s saves, Escape cancels.
    Dismissed with True when something was saved."""

    DEFAULT_CSS = """
    MemoryScreen {
        align: center middle;
    }
    MemoryScreen #memory-dialog {
        width: 90%;
        max-width: 110;
        height: 90%;
        padding: 0 1;
        border: thick $accent;
        background: $surface;
    }
    MemoryScreen Label {
        width: 1fr;
        margin-top: 1;
    }
    MemoryScreen TextArea {
        height: 6;
    }
    MemoryScreen #note {
        height: 4;
    }
    MemoryScreen #summary {
        height: 8;
    }
    MemoryScreen #auto-row {
        height: auto;
        margin-top: 1;
    }
    MemoryScreen #auto-row Label {
        width: 1fr;
        margin: 1 0 0 1;
    }
    MemoryScreen #memory-keys {
        color: $text-muted;
        margin-top: 1;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    class Applied(Message):
        """Every change was kept."""

    class Refused(Message):
        """A change could not be kept; ``error`` is one line."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, game: GameController) -> None:
        super().__init__()
        self.game = game
        self.kept = MemoryTexts.of(game.session)  # what the game holds (as last saved here)
        self.saving = False
        self.changed = False

    def compose(self) -> ComposeResult:
        kept = self.kept
        with VerticalScroll(id="memory-dialog"):
            yield Label(
                "Memory (plot essentials: names, places, facts the story must not forget; "
                "read every turn):"
            )
            yield TextArea(kept.memory, id="memory", soft_wrap=True, show_line_numbers=False)
            yield Label("Author's note (style, tone, what to stress; just before your action):")
            yield TextArea(kept.note, id="note", soft_wrap=True)
            yield Label(covered_text(self.game.session), id="summary-label")
            yield TextArea(kept.summary, id="summary", soft_wrap=True)
            with Horizontal(id="auto-row"):
                yield Switch(kept.auto_summary, id="auto-summary")
                yield Label("The model writes the story so far as turns leave the window")
            yield Static("ctrl+s saves · Escape cancels · Tab moves on", id="memory-keys")

    def on_mount(self) -> None:
        self.query_one("#memory", TextArea).focus()

    def typed(self) -> MemoryTexts:
        """What the screen holds now."""
        return MemoryTexts(
            self.query_one("#memory", TextArea).text,
            self.query_one("#note", TextArea).text,
            self.query_one("#summary", TextArea).text,
            self.query_one("#auto-summary", Switch).value,
        )

    def action_save(self) -> None:
        if self.saving:
            return
        self.saving = True
        self.query_one("#memory-keys", Static).update("saving…")
        self.apply(self.typed())

    def action_cancel(self) -> None:
        if not self.saving:  # a save under way finishes first (it is quick)
            self.dismiss(self.changed)

    @work(thread=True, exclusive=True, group="memory", exit_on_error=False)
    def apply(self, typed: MemoryTexts) -> None:
        """Apply what changed, one by one; what was kept is remembered so that a second try
        after a refusal does not apply it again."""
        game, kept = self.game, self.kept
        steps = [
            ("memory", typed.memory.strip() != kept.memory.strip(), game.set_memory),
            ("note", typed.note.strip() != kept.note.strip(), game.set_note),
            ("summary", typed.summary.strip() != kept.summary.strip(), game.set_summary),
        ]
        try:
            for name, changed, setter in steps:
                if changed:
                    setter(getattr(typed, name))
                    self.kept = kept = _replace(kept, name, getattr(typed, name))
                    self.changed = True
            if typed.auto_summary != kept.auto_summary:
                game.set_summaries(typed.auto_summary)
                self.kept = _replace(kept, "auto_summary", typed.auto_summary)
                self.changed = True
        except (MemoryTextError, GameBusyError) as exc:
            self.post_message(self.Refused(f"Not saved: {_one_line(exc)}."))
            return
        except Exception as exc:  # a worker must never take the app down
            self.post_message(self.Refused(f"Not saved: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Applied())

    def on_memory_screen_applied(self, message: Applied) -> None:
        self.saving = False
        self.dismiss(True)

    def on_memory_screen_refused(self, message: Refused) -> None:
        self.saving = False
        self.query_one("#memory-keys", Static).update(
            "ctrl+s saves · Escape cancels · Tab moves on"
        )
        self.notify(message.error, severity="error", timeout=8)


def _replace(texts: MemoryTexts, name: str, value: object) -> MemoryTexts:
    return replace(texts, **{name: value})
