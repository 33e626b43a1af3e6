"""Hostile text in the TUI: save names, titles and problems are shown as text, never as Rich
markup or terminal escapes (a name like ``[/]`` would otherwise crash the load screen)."""

from __future__ import annotations

import json

from textual.widgets import DataTable

from game.tui.load import LoadScreen
from tests import hostile
from tests.test_tui import make_app

HOSTILE_NAME = "[/] [bold red]Night[/bold red] \x1b[2J [link=http://x]y[/link]"


async def test_the_load_screen_shows_hostile_names_as_text(tmp_path):
    saves = tmp_path / "saves"
    saves.mkdir()
    (saves / "a.json").write_text(json.dumps(hostile.save_document(name=HOSTILE_NAME)))
    (saves / "b.json").write_text(json.dumps(hostile.save_document(prompt_format="[/]")))
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, LoadScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        cells = [str(table.get_row_at(index)[0]) for index in range(2)]
        shown = [table.get_row_at(index) for index in range(2)]
        assert any("[/] [bold red]Night[/bold red]" in str(cell) for cell in cells), shown
        assert all("\x1b" not in str(cell) for row in shown for cell in row)
