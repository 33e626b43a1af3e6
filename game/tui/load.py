"""The load screen: every save, newest first; unreadable ones shown with their problem."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from game.saves import SaveFolder
from game.textsafety import for_terminal


class LoadScreen(Screen[None]):
    """Pick a save of ``saves`` to go on with."""

    DEFAULT_CSS = """
    #saves {
        height: 1fr;
    }
    """

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    class SaveChosen(Message):
        """Go on with the save at ``path``."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, saves: SaveFolder) -> None:
        super().__init__()
        self.saves = saves

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield DataTable(id="saves", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Load a game"
        self.sub_title = str(self.saves.folder)
        table = self.query_one(DataTable)
        table.add_columns("name", "scenario", "turns", "last played")
        for entry in self.saves.listing():
            if entry.save is None:
                table.add_row(
                    _text(entry.path.name), _text(f"unreadable: {entry.problem}"), "", "", key=None
                )
                continue
            played = entry.save.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
            table.add_row(
                _text(entry.save.name),
                _text(entry.save.scenario.title),
                str(entry.save.turn_count),
                played,
                key=str(entry.path),
            )
        if table.row_count == 0:
            self.notify("There are no saves yet.")
        table.focus()

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is None:
            self.notify("That save cannot be read.", severity="error")
            return
        self.post_message(self.SaveChosen(Path(event.row_key.value)))


def _text(value: str) -> Text:
    """A cell from a save file: plain text (never Rich markup), escapes visible (issue 11)."""
    return Text(for_terminal(value, one_line=True))
