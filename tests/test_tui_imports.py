"""The start screen imports: files dropped into the packs folder, and a path typed in the filter;
an imported card's intro opens the game without generating."""

from __future__ import annotations

from textual.widgets import OptionList

from game.backends.scripted import ScriptedBackend
from game.catalog import user_packs_dir
from game.tui.start import StartScreen
from game.tui.widgets import ChoiceList
from tests import cardfixtures as fx
from tests.test_tui import REPLIES, make_app, play_screen, settle, turn_texts


async def test_a_dropped_card_is_picked_up_and_its_intro_opens_the_game(tmp_path):
    packs = user_packs_dir()
    packs.mkdir(parents=True)
    fx.write_png_card(packs / "sera.png", chara=fx.v2_card(alternate_greetings=[]))
    backend = ScriptedBackend(replies=REPLIES)
    app = make_app(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        assert any(n.message.startswith("Imported sera.png") for n in app._notifications)
        await pilot.click("#filter")
        await pilot.press(*"seraphina")
        options = app.screen.query_one("#scenarios", OptionList)
        assert options.option_count == 1
        await pilot.press("enter")
        await settle(pilot)
        screen = play_screen(app)
        assert turn_texts(app) == [
            ("Start!", "*Seraphina smiles at Traveler.* You're awake at last.")
        ]
        assert [str(o.prompt) for o in screen.query_one(ChoiceList).options] == [
            "1. Greet Seraphina.",
            "2. Look around.",
            "3. Ask Seraphina what is going on.",
        ]
        assert backend.calls == []  # the intro was not generated


async def test_a_typed_path_is_imported(tmp_path):
    card = fx.write_json(tmp_path / "zed.json", fx.v2_card(name="Zed", alternate_greetings=[]))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.click("#filter")
        await pilot.press(*str(bad), "enter")
        await pilot.pause()
        assert any(n.message.startswith("Could not import bad.json") for n in app._notifications)
        await pilot.press(*str(card), "enter")
        await pilot.pause()
        assert any(n.message.startswith("Imported zed.json") for n in app._notifications)
        assert any(entry.scenario.id == "zed" for entry in app.entries)
        await pilot.press(*"zed")
        assert app.screen.query_one("#scenarios", OptionList).option_count == 1
