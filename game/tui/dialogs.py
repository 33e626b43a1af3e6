"""Small modal screens: a save name, a message."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class SaveNameScreen(ModalScreen[str | None]):
    """Ask for a save's name; Enter saves, Escape cancels."""

    DEFAULT_CSS = """
    SaveNameScreen {
        align: center middle;
    }
    #dialog {
        width: 60;
        height: auto;
        padding: 1 2;
        border: thick $accent;
        background: $surface;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self._default = name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Save as (Enter saves, Escape cancels):")
            yield Input(value=self._default, id="save-name")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
