"""Paths every player takes, through the app as the command line builds it (``cli.tui_app``):
resume by name, settings during a game, long save names, quitting or leaving while a reply is
written, a narrow window. The scripted backend stands in for the model; the crashes that only
a real model shows run on it too (marked ``model``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets._toast import Toast

from game.backends.scripted import ScriptedBackend
from game.cli import tui_app_for
from game.config import config_file, load_settings
from game.saves import SaveFolder, load
from game.tui.app import AdventureApp
from game.tui.play import PlayScreen
from game.tui.settings import SettingsScreen
from game.tui.start import StartScreen
from game.tui.widgets import ActionInput, StatusLine, StoryView, TurnView
from tests.test_tui import REPLIES, settle, turn_texts

SIZE = (100, 30)


def saves_folder() -> Path:
    return load_settings().saves_dir  # the test's private folder (see conftest)


def scripted(**options) -> tuple[list[ScriptedBackend], object]:
    """A factory that loads a new scripted model each time, and the list of those it made."""
    made: list[ScriptedBackend] = []
    options.setdefault("replies", REPLIES)

    def factory(settings) -> ScriptedBackend:
        made.append(ScriptedBackend(n_ctx=settings.n_ctx, **options))
        return made[-1]

    return made, factory


def app_for(argv: list[str], **options) -> tuple[AdventureApp, list[ScriptedBackend]]:
    made, factory = scripted(**options)
    return tui_app_for(argv, backend_factory=factory), made


def notes(app: AdventureApp) -> list[str]:
    return [notification.message for notification in app._notifications]


async def wait_until(pilot, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


async def test_resume_by_name_opens_the_game(tmp_path):
    app, _ = app_for(["play", "--name", "Night one"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
    app, _ = app_for(["resume", "Night one"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PlayScreen)
        assert turn_texts(app) == [
            ("Start!", "The gate creaks open."),
            ("Go inside.", "Inside, dust hangs in the air."),
        ]
        assert screen.sub_title == "Night one"
        await pilot.press("2")
        await settle(pilot)
    assert load(saves_folder() / "night-one.json").turn_count == 3


async def test_play_name_and_no_save_are_honoured():
    app, _ = app_for(["play", "--scenario", "derelict", "--name", "My own name"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
    assert load(saves_folder() / "my-own-name.json").scenario.id == "derelict"
    before = sorted(saves_folder().iterdir())
    app, _ = app_for(["play", "--no-save"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert "saving off" in str(app.screen.query_one(StatusLine).render())
    assert sorted(saves_folder().iterdir()) == before


async def test_a_save_name_too_long_is_refused_in_one_line():
    app, _ = app_for(["play", "--name", "short"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("#save-name").value = "n" * 201
        await pilot.press("enter")
        await settle(pilot)
        assert any("at most 200 characters" in note for note in notes(app))
        assert isinstance(app.screen, PlayScreen) and app.screen.game.slot.name == "short"
        await pilot.press("1")  # the game goes on
        await settle(pilot)
        assert app.screen.session.turn == 2
    assert [p.name for p in saves_folder().glob("*.json")] == ["short.json"]


async def change_settings(pilot, **fields: str) -> None:
    await pilot.press("f2")
    await pilot.pause()
    assert isinstance(pilot.app.screen, SettingsScreen)
    for name, value in fields.items():
        pilot.app.screen.query_one(f"#{name}").value = value
    await pilot.press("ctrl+s")
    await pilot.pause()


async def test_settings_during_a_game_keep_its_model_and_apply_to_the_next():
    app, made = app_for(["play"])
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await change_settings(pilot, n_ctx="1024")
        assert isinstance(app.screen, PlayScreen)
        await pilot.press("1")
        await settle(pilot)
        screen = app.screen
        assert screen.session.turn == 2 and not made[0].closed
        assert not any("closed" in note for note in notes(app))
        # The next game loads the model the new settings ask for; the old one is let go.
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert len(made) == 2 and made[1].n_ctx == 1024
        await wait_until(pilot, lambda: made[0].closed)
    assert load_settings().n_ctx == 1024


async def test_settings_written_back_keep_what_the_player_did_not_change():
    path = config_file()
    path.write_text(path.read_text() + "n_threads: 3\n")
    app, _ = app_for(["--log-file", "/dev/null", "play", "--n-ctx", "1024"])
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await change_settings(pilot, **{"sampling-temperature": "0.4"})
        # A model file that is not there is refused before anything is written.
        await change_settings(pilot, model_path="/nowhere/model.gguf")
        assert isinstance(app.screen, SettingsScreen)
        assert any("model file not found: /nowhere/model.gguf" in n for n in notes(app))
    written = path.read_text()
    assert "saves_dir:" in written and "n_threads: 3" in written
    assert "temperature: 0.4" in written
    assert "n_ctx" not in written  # it came from the command line, for that run only
    assert "model_path" not in written
    assert app.saves.folder == saves_folder()


async def test_the_start_screen_filter_has_the_focus_and_enter_starts():
    app, _ = app_for([])
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, StartScreen)
        await pilot.press(*"derelict", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PlayScreen)
        assert app.screen.session.scenario.id == "derelict"


async def test_digits_say_why_they_pick_nothing():
    app, _ = app_for(["play"], replies=("word " * 300,), token_delay_s=0.005)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query(TurnView) and app.screen.busy)
        await pilot.press("1")
        assert any("Wait for the reply" in note for note in notes(app))
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.session.exchanges[-1].cut_short
        assert app.screen.session.choices == []
        await pilot.press("1")
        assert any("offers no choices" in note for note in notes(app))


async def test_a_narrow_window_keeps_the_activity_and_the_newest_text():
    app, _ = app_for(["play"], replies=("line\n" * 60 + "\n- A.\n- B.\n- C.",))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for _ in range(3):
            await pilot.press("1")
            await settle(pilot)
        story = app.screen.query_one(StoryView)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert story.max_scroll_y > 0 and story.scroll_y == story.max_scroll_y
        app.screen.query_one(StatusLine).activity = "writing… (Escape stops)"
        await pilot.pause()
        shown = str(app.screen.query_one(StatusLine).render())
        assert shown.startswith("writing… (Escape stops)")


async def test_notifications_never_cover_the_status_line():
    app, _ = app_for(["play"])
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        app.notify("A long notification that takes a few lines of the screen to say its piece.")
        await pilot.pause(0.3)
        status = app.screen.query_one(StatusLine).region
        toasts = list(app.screen.query(Toast))
        assert toasts
        for toast in toasts:
            assert not toast.region.overlaps(status)
            assert not toast.region.overlaps(app.screen.query_one(ActionInput).region)


async def test_quit_while_a_reply_is_written_saves_what_was_written():
    app, _ = app_for(["play", "--name", "quitter"], replies=("word " * 2000,), token_delay_s=0.002)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "word word" in "".join(r for _, r in turn_texts(app)))
        await pilot.press("ctrl+q")
    saved = load(saves_folder() / "quitter.json")
    assert saved.turn_count == 1 and saved.turns[1].cut_short
    assert 0 < saved.turns[1].text.count("word") < 2000


async def test_a_new_game_while_a_reply_is_written_ends_the_old_one():
    app, made = app_for(["play", "--name", "left"], replies=("word " * 2000,), token_delay_s=0.002)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "word word" in "".join(r for _, r in turn_texts(app)))
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        await app.workers.wait_for_complete()
        assert not any(worker.is_running for worker in app.workers)
        assert app.models.users(made[0]) == 0
    saved = load(saves_folder() / "left.json")
    assert saved.turns[1].cut_short


async def test_escape_stops_a_long_prompt_read_and_changes_nothing():
    app, made = app_for(["play"], read_batch=16, read_delay_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        status = app.screen.query_one(StatusLine)
        action = "I wait and listen to the rain on the roof. " * 12
        app.screen.query_one(ActionInput).value = action
        await pilot.press("enter")
        await wait_until(pilot, lambda: status.activity.startswith("reading the story"))
        await pilot.press("escape")
        await settle(pilot)
        screen = app.screen
        assert screen.session.turn == 1
        assert any("Stopped before the reply began" in note for note in notes(app))
        assert screen.query_one(ActionInput).value == action.strip()
        assert len(made[0].calls) == 2 and not screen.busy


@pytest.mark.model
async def test_settings_during_a_game_on_the_real_model():
    """The F2 crash lived in llama.cpp: a closed model used by the game in play."""
    from game.runtime import open_backend

    def slowed(settings):
        # The real model, each token held back a little, so that the settings are surely
        # saved while a reply is written.
        backend = open_backend(settings)
        generate = backend.generate

        def slow_generate(segments, request, on_token, on_progress=None):
            def slow(token, text):
                time.sleep(0.03)
                return on_token(token, text)

            return generate(segments, request, slow, on_progress)

        backend.generate = slow_generate
        return backend

    argv = ["play", "--n-ctx", "1024", "--max-tokens", "120", "--seed", "1"]
    app = tui_app_for(argv, backend_factory=slowed)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        first = app.screen.game.backend
        # Saved while the next reply is written: no freeze, no crash.
        app.screen.query_one(ActionInput).value = "I wait."
        await pilot.press("enter")
        writing = app.screen.busy
        await change_settings(pilot, n_ctx="768")
        await settle(pilot)
        await pilot.press(*"I listen.", "enter")
        await settle(pilot)
        screen = app.screen
        assert writing, "the settings were meant to be saved while a reply was written"
        assert screen.session.turn == 3 and screen.session.backend is first
        assert "context" in str(screen.query_one(StatusLine).render())
        await pilot.press("ctrl+n")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.session.backend.n_ctx == 768
        assert app.screen.session.backend is not first
        await wait_until(pilot, lambda: first._closed, timeout=60)


@pytest.mark.model
async def test_resume_by_name_on_the_real_model():
    app = tui_app_for(["play", "--name", "Real night", "--max-tokens", "48", "--seed", "1"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        opening = turn_texts(app)
    app = tui_app_for(["resume", "Real night", "--max-tokens", "48"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, PlayScreen) and turn_texts(app) == opening
        await pilot.press(*"I wait.", "enter")
        await settle(pilot)
        assert app.screen.session.turn == 2
    assert SaveFolder(saves_folder()).listing()[0].save.turn_count == 2


async def test_notifications_are_plain_text():
    """A save name or a model error may hold Rich markup; a notification shows it as written."""
    app, _ = app_for(["play"])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        app.notify("model file not found: /tmp/[/]bad[b].gguf", severity="error")
        app.screen.notify("save [red]x[/red] [/]")
        await pilot.pause(0.3)
        shown = " ".join(str(toast.render()) for toast in app.screen.query(Toast))
        assert "[/]bad[b].gguf" in shown and "[red]x[/red]" in shown
