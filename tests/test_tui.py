"""The TUI through Textual's Pilot, on the scripted backend (and one test on the real model)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList

from game.backends.base import BackendError
from game.backends.scripted import ScriptedBackend
from game.catalog import builtin_catalog, entries
from game.config import Settings, load_settings
from game.saves import SaveFolder, load
from game.tui.app import AdventureApp, StartAt, create_app
from game.tui.load import LoadScreen
from game.tui.play import PlayScreen
from game.tui.start import StartScreen
from game.tui.widgets import ActionInput, ChoiceList, StatusLine, TurnView


def builtin_entries():
    return entries(builtin_catalog())


REPLIES = (
    "The gate creaks open.\n\n- Go inside.\n- Circle the house.\n- Leave.",
    "Inside, dust hangs in the air.\n\n- Climb the stairs.\n- Open the cellar.\n- Call out.",
    "A clock ticks somewhere above.\n\n- Follow the sound.\n- Hide.\n- Run.",
    "The stairs groan.\n\n- Keep climbing.\n- Go back.\n- Wait.",
)


def make_app(
    tmp_path: Path,
    backend: ScriptedBackend | None = None,
    *,
    start: StartAt | None = None,
    factory=None,
) -> AdventureApp:
    backend = backend or ScriptedBackend(replies=REPLIES, token_seconds=0.01)
    return create_app(
        Settings(saves_dir=tmp_path / "saves"),
        builtin_entries(),
        backend_factory=factory or (lambda settings: backend),
        settings_path=tmp_path / "config.yaml",
        start=start,
    )


def haunted():
    return next(entry for entry in builtin_entries() if entry.scenario.id == "haunted-house")


async def settle(pilot, timeout: float = 120.0) -> None:
    """Wait until no worker runs and the screen is not busy (a turn may start after the model
    finished loading, so one wait for the current workers is not enough)."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not getattr(app.screen, "busy", False) and not any(w.is_running for w in app.workers):
            await pilot.pause()
            return
        assert time.monotonic() < deadline, "the app did not settle"
        await pilot.pause(0.05)


def play_screen(app: AdventureApp) -> PlayScreen:
    assert isinstance(app.screen, PlayScreen), app.screen
    return app.screen


def turn_texts(app: AdventureApp) -> list[tuple[str, str]]:
    return [(view.action, view.reply) for view in app.screen.query(TurnView)]


async def test_start_screen_to_a_game(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, StartScreen)
        options = app.screen.query_one("#scenarios", OptionList)
        assert options.option_count == len(builtin_entries()) >= 3
        await pilot.click("#filter")
        await pilot.press(*"derelict")
        assert options.option_count == 1
        await pilot.press("ctrl+f")
        for _ in "derelict":
            await pilot.press("backspace")
        await pilot.press(*"hollow", "enter", "enter")
        await settle(pilot)
        screen = play_screen(app)
        assert screen.session.scenario.id == "haunted-house"
        assert turn_texts(app) == [("Start!", "The gate creaks open.")]
        assert [str(o.prompt) for o in screen.query_one(ChoiceList).options] == [
            "1. Go inside.",
            "2. Circle the house.",
            "3. Leave.",
        ]
        status = str(screen.query_one(StatusLine).render())
        assert (
            "scripted" in status
            and "context " in status
            and "tok/s" in status
            and "saved" in status
        )


async def test_keys_pick_choices_and_free_text_plays(tmp_path):
    app = make_app(tmp_path, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert turn_texts(app)[-1] == ("Circle the house.", "Inside, dust hangs in the air.")
        await pilot.press(*"I knock twice", "enter")
        await settle(pilot)
        assert turn_texts(app)[-1] == ("I knock twice", "A clock ticks somewhere above.")
        assert app.screen.query_one(ActionInput).value == ""
        # Enter on a highlighted choice picks it too.
        app.screen.query_one(ChoiceList).focus()
        await pilot.press("down", "enter")
        await settle(pilot)
        assert turn_texts(app)[-1][0] == "Hide."


async def test_retry_undo_redo_and_edit(tmp_path):
    app = make_app(tmp_path, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        screen = play_screen(app)
        assert turn_texts(app)[-1] == ("Go inside.", "A clock ticks somewhere above.")
        assert screen.session.turn == 2
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert turn_texts(app) == [("Start!", "The gate creaks open.")]
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert len(turn_texts(app)) == 2
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert screen.query_one(ActionInput).value == "Go inside."
        assert len(turn_texts(app)) == 1
        commands = {command.title for command in app.get_system_commands(screen)}
        assert {"Retry", "Undo", "Redo", "Edit last action", "Save", "Settings"} <= commands


async def test_escape_stops_a_reply_and_keeps_it(tmp_path):
    slow = ScriptedBackend(replies=("word " * 200,), token_delay_s=0.01)
    app = make_app(tmp_path, slow, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.5)
        screen = play_screen(app)
        assert screen.busy
        await pilot.press("escape")
        await settle(pilot)
        exchange = screen.session.exchanges[-1]
        assert exchange.cut_short
        assert 0 < len(exchange.reply.text) < len("word " * 200)
        assert screen.streamed_pieces >= 2  # it streamed in batches, not at the end
        view = list(app.screen.query(TurnView))[-1]
        assert view.cut_short and "cut short" in str(view.render())
        # While it wrote, keys still worked; now retry is available again.
        assert not screen.busy


async def test_save_and_load(tmp_path):
    app = make_app(tmp_path, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        for _ in range(60):
            await pilot.press("backspace")
        await pilot.press(*"My Night", "enter")
        await pilot.pause()
        saved = tmp_path / "saves" / "my-night.json"
        assert load(saved).turn_count == 2

    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert "Continue: My Night" in str(app.screen.query_one("#continue").label)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, LoadScreen)
        assert app.screen.query_one(DataTable).row_count >= 1
        await pilot.press("enter")
        await settle(pilot)
        screen = play_screen(app)
        assert turn_texts(app) == [
            ("Start!", "The gate creaks open."),
            ("Go inside.", "Inside, dust hangs in the air."),
        ]
        assert screen.session.choices == ["Climb the stairs.", "Open the cellar.", "Call out."]
        assert screen.sub_title == "My Night"


async def test_quit_autosaves(tmp_path):
    app = make_app(tmp_path, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("ctrl+z")
        await pilot.press("ctrl+q")
    saves = SaveFolder(tmp_path / "saves").listing()
    assert len(saves) == 1 and saves[0].save.turn_count == 1 and len(saves[0].save.redo) == 2


async def test_a_failing_backend_is_shown_and_the_game_is_unchanged(tmp_path):
    failing = ScriptedBackend(replies=REPLIES, fail_on_calls=frozenset({2}))
    app = make_app(tmp_path, failing, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        screen = play_screen(app)
        assert screen.session.turn == 1 and not screen.busy
        assert turn_texts(app) == [("Start!", "The gate creaks open.")]
        assert any("scripted failure on call 2" in n.message for n in app._notifications)
        await pilot.press("1")
        await settle(pilot)
        assert screen.session.turn == 2


async def test_a_model_that_fails_to_load_is_shown(tmp_path):
    def broken(settings):
        raise BackendError("model file not found: /nowhere.gguf")

    app = make_app(tmp_path, start=StartAt(entry=haunted()), factory=broken)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert any("model file not found" in n.message for n in app._notifications)
        # Back to the scenarios, where the player can change the settings or pick another.
        assert isinstance(app.screen, StartScreen)


async def test_settings_screen_writes_the_config_file(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#n_ctx").value = "4096"
        app.screen.query_one("#sampling-temperature").value = "0.6"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
    saved = load_settings(tmp_path / "config.yaml")
    assert saved.n_ctx == 4096 and saved.sampling.temperature == 0.6
    assert app.settings.n_ctx == 4096


async def test_bad_settings_are_refused(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#n_ctx").value = "12"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not (tmp_path / "config.yaml").exists()
        assert any("n_ctx" in n.message for n in app._notifications)


@pytest.mark.model
async def test_a_turn_on_the_real_model_streams_and_shows_its_choices(tmp_path):
    from game.runtime import open_backend

    app = AdventureApp(
        settings=Settings(
            saves_dir=tmp_path / "saves", n_ctx=1024, seed=2, sampling={"max_tokens": 120}
        ),
        entries=builtin_entries(),
        backend_factory=open_backend,
        settings_path=tmp_path / "config.yaml",
        start=StartAt(entry=haunted()),
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = play_screen(app)
        assert screen.streamed_pieces >= 2
        reply = turn_texts(app)[0][1]
        assert reply and reply == screen.session.exchanges[0].narrative
        assert len(screen.session.choices) == 3
        assert screen.query_one(ChoiceList).option_count == 3
        assert "SmolLM2" in str(screen.query_one(StatusLine).render())


SNAPSHOT_SIZE = (100, 30)


def test_start_screen_snapshot(tmp_path, snap_compare):
    assert snap_compare(make_app(tmp_path), terminal_size=SNAPSHOT_SIZE)


def test_play_screen_snapshot(tmp_path, snap_compare, monkeypatch):
    monkeypatch.setattr(
        "game.controller.default_save_name", lambda scenario: "haunted-house snapshot"
    )

    async def first_turn(pilot) -> None:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)

    app = make_app(tmp_path, start=StartAt(entry=haunted()))
    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=first_turn)


async def test_a_long_read_shows_the_reading_bar_and_escape_leaves_the_game_as_it_was(tmp_path):
    from game.tui.progress import ReadingBar

    slow = ScriptedBackend(replies=REPLIES, read_batch=8, read_delay_s=0.05)
    app = make_app(tmp_path, slow, start=StartAt(entry=haunted()))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = None
        bar = None
        for _ in range(100):  # wait for the bar: the model loads, then the opening turn reads
            await pilot.pause(0.05)
            if isinstance(app.screen, PlayScreen):
                screen = app.screen
                bar = screen.query_one(ReadingBar)
                if bar.display:
                    break
        assert screen is not None and bar is not None and bar.display
        assert "left" in str(bar.query_one("#reading-left").render())
        await pilot.press("escape")
        await settle(pilot)
        assert not bar.display
        assert screen.session.exchanges == [] and not screen.busy
        assert not list(screen.query(TurnView))
        # Nothing was lost: the next turn plays, reading only what is not cached yet.
        slow.read_delay_s = 0.0
        await pilot.press(*"I knock.", "enter")
        await settle(pilot)
        assert len(screen.session.exchanges) == 1
