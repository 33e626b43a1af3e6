"""The load screen: every save, newest first; unreadable ones shown with their problem."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

if TYPE_CHECKING:
    from game.tui.app import AdventureApp


class LoadScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield DataTable(id="saves", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Load a game"
        adventure: AdventureApp = self.app  # type: ignore[assignment]
        self.sub_title = str(adventure.saves.folder)
        table = self.query_one(DataTable)
        table.add_columns("name", "scenario", "turns", "last played")
        for entry in adventure.saves.listing():
            if entry.save is None:
                table.add_row(entry.path.name, f"unreadable: {entry.problem}", "", "", key=None)
                continue
            played = entry.save.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
            table.add_row(
                entry.save.name,
                entry.save.scenario.title,
                str(entry.save.turn_count),
                played,
                key=str(entry.path),
            )
        if table.row_count == 0:
            self.notify("There are no saves yet.")
        table.focus()

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        adventure: AdventureApp = self.app  # type: ignore[assignment]
        if event.row_key.value is None:
            self.notify("That save cannot be read.", severity="error")
            return
        adventure.resume(Path(event.row_key.value))
