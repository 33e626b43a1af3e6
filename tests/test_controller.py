"""The game controller and the session under it: failed turns leave no trace, undo restores
the window, replies stay within the context, models are shared and closed only when unused."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.backends.base import GenerationCancelled
from game.backends.scripted import ScriptedBackend
from game.catalog import ScenarioEntry
from game.config import Settings
from game.controller import Explicit, GameBusyError, GameController
from game.models import ModelHost
from game.prompt import METHARME
from game.saves import (
    ModelInfo,
    SaveFolder,
    SaveNameError,
    SaveSlot,
    load,
    snapshot,
)
from game.session import Session
from tests.factories import make_scenario

MODEL = ModelInfo(file="scripted.gguf", size=1)


def numbered(prompt: str) -> str:
    turn = prompt.count("<|model|>")
    return f"Room {turn} is dim and cold.\n\n- North {turn}.\n- South {turn}.\n- Wait {turn}."


def game_on(backend: ScriptedBackend, folder=None, **scenario) -> GameController:
    session = Session(make_scenario(**scenario), backend, METHARME, seed=3)
    slot = SaveSlot.new(SaveFolder(folder), "game", MODEL) if folder else None
    return GameController(session, slot)


def state(session: Session) -> tuple:
    return (
        [(e.player.text, e.reply.text, e.window_start) for e in session.exchanges],
        [e.player.text for e in session.undone],
        session.window_start,
        session.generations,
    )


# -- failed turns --------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [AssertionError("sampler bug"), KeyboardInterrupt()])
def test_a_turn_that_fails_with_any_exception_leaves_the_game_as_it_was(tmp_path, error):
    backend = ScriptedBackend(replies=numbered, raise_on_calls={3: error})
    game = game_on(backend, tmp_path)
    game.play("One.")
    game.play("Two.")
    before = state(game.session)
    saved = (tmp_path / "game.json").read_bytes()
    with pytest.raises(type(error)):
        game.play("Three.")
    assert state(game.session) == before  # the seed counter too
    assert (tmp_path / "game.json").read_bytes() == saved
    assert not game.busy


@pytest.mark.parametrize("error", [AssertionError("sampler bug"), KeyboardInterrupt()])
def test_a_retry_that_fails_with_any_exception_keeps_the_reply(tmp_path, error):
    backend = ScriptedBackend(replies=numbered, raise_on_calls={2: error})
    game = game_on(backend, tmp_path)
    game.play("One.")
    before = state(game.session)
    with pytest.raises(type(error)):
        game.retry()
    assert state(game.session) == before
    # ... and the next autosave does not persist a loss.
    game.play("Two.")
    assert load(tmp_path / "game.json").turn_count == 2


def test_a_cancelled_prompt_read_leaves_the_game_as_it_was():
    backend = ScriptedBackend(replies=numbered, read_batch=8, read_delay_s=0.02)
    game = game_on(backend)
    before = state(game.session)
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> bool:
        seen.append((done, total))
        if len(seen) == 2:
            game.cancel()  # Escape, from another thread in a front end
        return True

    with pytest.raises(GenerationCancelled):
        game.play("Go.", on_progress=progress)
    assert len(seen) == 2 and seen[0][1] > 16
    assert state(game.session) == before
    # The game goes on; the prompt read so far is not read twice.
    outcome = game.play("Go.")
    assert outcome.result.stats.evaluated_tokens < seen[0][1]


def test_one_turn_at_a_time():
    backend = ScriptedBackend(replies=numbered, token_delay_s=0.02)
    game = game_on(backend)
    worker = threading.Thread(target=game.play, args=("Slow.",))
    worker.start()
    while not game.busy:
        time.sleep(0.001)
    for change in (lambda: game.play("Other."), game.undo, lambda: game.save_as("x")):
        with pytest.raises(GameBusyError):
            change()
    game.cancel()
    worker.join(5)
    assert game.session.turn == 1 and game.session.exchanges[0].cut_short


def test_close_stops_the_reply_keeps_what_was_written_and_saves(tmp_path):
    backend = ScriptedBackend(replies=("word " * 400,), token_delay_s=0.005)
    game = game_on(backend, tmp_path, sampling={"max_tokens": 500})
    worker = threading.Thread(target=game.play, args=("Talk.",))
    worker.start()
    while len(backend.calls) == 0:
        time.sleep(0.001)
    time.sleep(0.05)
    assert game.close() is None
    worker.join(5)
    saved = load(tmp_path / "game.json")
    assert saved.turn_count == 1 and saved.turns[1].cut_short
    assert 0 < saved.turns[1].text.count("word") < 400


# -- the window -----------------------------------------------------------------------------------


def test_undo_after_a_slide_brings_the_dropped_exchanges_back():
    backend = ScriptedBackend(replies=numbered, n_ctx=600)
    session = Session(make_scenario(sampling={"max_tokens": 120}), backend, METHARME)
    while session.window_start == 0:
        calls = len(backend.calls)
        session.play(f"I do thing {session.turn}.")
    slid_prompt = backend.calls[calls].prompt
    session.undo()
    assert session.window_start == 0
    session.redo()
    assert session.window_start == session.exchanges[-1].window_start > 0
    # Retrying the turn that slid builds the prompt it was first played with.
    calls = len(backend.calls)
    session.retry()
    assert backend.calls[calls].prompt == slid_prompt


def test_an_undone_window_survives_a_save(tmp_path):
    session = Session(
        make_scenario(sampling={"max_tokens": 120}),
        ScriptedBackend(replies=numbered, n_ctx=600),
        METHARME,
    )
    while session.window_start == 0:
        session.play(f"I do thing {session.turn}.")
    session.play("One more.")
    slot = SaveSlot.new(SaveFolder(tmp_path), "w", MODEL)
    game = GameController.resume(
        Settings(saves_dir=tmp_path),
        slot.save(session),
        ModelHost(lambda settings: ScriptedBackend(replies=numbered, n_ctx=600)),
    )
    session.undo()
    session.undo()
    game.session.undo()
    game.session.undo()
    assert game.session.window_start == session.window_start == 0


def long_narrative(prompt: str) -> str:
    # A first pass that runs out of tokens, then option blocks whose long lines repeat: the
    # writer keeps the distinct ones and asks for the rest again, pass after pass.
    if prompt.endswith("<|model|>"):
        return "The corridor stretches on and on. " * 40
    line = "- Go on down the long dark corridor towards the faint light at its end."
    return "\n".join([line] * 3)


@pytest.mark.parametrize("mode", ["guided", "free"])
def test_option_passes_never_outgrow_the_reply_budget(mode):
    backend = ScriptedBackend(replies=long_narrative, n_ctx=700)
    session = Session(
        make_scenario(sampling={"max_tokens": 200}, choice_mode=mode), backend, METHARME
    )
    for turn in range(8):
        first = len(backend.calls)
        result = session.play(f"Step {turn}.")
        assert result.option_passes >= 1
        passes = backend.calls[first:]
        start = len(passes[0].prompt)
        for call in passes:
            # What the reply already holds plus what this pass may add: within max_tokens.
            assert len(call.prompt) - start + call.max_tokens <= 200
            assert len(call.prompt) + call.max_tokens <= 700


# -- saves ------------------------------------------------------------------------------------


def test_autosave_never_rereads_its_own_file(tmp_path, monkeypatch):
    game = game_on(ScriptedBackend(replies=numbered), tmp_path)
    game.play("One.")

    def no_reading(path):
        raise AssertionError("autosave read the save back")

    monkeypatch.setattr("game.saves.load", no_reading)
    game.play("Two.")
    game.undo()
    assert game.save_state == "saved"


def test_autosave_goes_on_when_its_own_file_was_damaged(tmp_path):
    game = game_on(ScriptedBackend(replies=numbered), tmp_path)
    game.play("One.")
    (tmp_path / "game.json").write_text("{ damaged")
    outcome = game.play("Two.")
    assert outcome.save_problem is None
    assert load(tmp_path / "game.json").turn_count == 2


def test_a_save_name_too_long_is_one_line_and_changes_nothing(tmp_path):
    game = game_on(ScriptedBackend(replies=numbered), tmp_path)
    game.play("One.")
    with pytest.raises(SaveNameError, match="at most 200 characters"):
        game.save_as("x" * 201)
    assert game.slot.name == "game"
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["game.json"]


# -- models ----------------------------------------------------------------------------------


def entry() -> ScenarioEntry:
    return ScenarioEntry(make_scenario(), "test.yaml", "test", "Test")


def test_a_settings_change_never_closes_the_model_a_game_uses(tmp_path):
    loaded: list[ScriptedBackend] = []

    def factory(settings: Settings) -> ScriptedBackend:
        loaded.append(ScriptedBackend(replies=numbered, n_ctx=settings.n_ctx))
        return loaded[-1]

    host = ModelHost(factory)
    first = GameController.new_game(Settings(saves_dir=tmp_path), entry(), host)
    first.play_opening()
    # The player changes the context size: the next game gets a new model ...
    second = GameController.new_game(Settings(saves_dir=tmp_path, n_ctx=1024), entry(), host)
    assert second.backend is not first.backend
    # ... and the game in play goes on with its own, which is not closed.
    first.play("Go on.")
    assert not loaded[0].closed
    first.close()
    assert loaded[0].closed and not loaded[1].closed
    # The same settings share the loaded model.
    third = GameController.new_game(Settings(saves_dir=tmp_path, n_ctx=1024), entry(), host)
    assert third.backend is second.backend and host.users(second.backend) == 2


def test_resume_takes_the_command_line_over_the_save(tmp_path):
    game = game_on(ScriptedBackend(replies=numbered), tmp_path)
    game.play("One.")
    host = ModelHost(lambda settings: ScriptedBackend(replies=numbered, supports_grammar=False))
    resumed = GameController.resume(
        Settings(saves_dir=tmp_path),
        tmp_path / "game.json",
        host,
        explicit=Explicit.from_overrides(
            {"seed": 77, "sampling": {"temperature": 0.3, "max_tokens": 64}}
        ),
    )
    session = resumed.session
    assert session.seed == 77
    assert session.sampling.temperature == 0.3 and session.max_tokens == 64
    # The save's guided mode cannot run on a backend without grammars: it falls back.
    assert session.choice_mode == "free"
    plain = GameController.resume(Settings(saves_dir=tmp_path), tmp_path / "game.json", host)
    assert plain.session.seed == 3 and plain.session.sampling.temperature == 0.8


def test_resume_names_a_changed_model(tmp_path):
    game = game_on(ScriptedBackend(replies=numbered), tmp_path)
    game.play("One.")
    host = ModelHost(lambda settings: ScriptedBackend(replies=numbered))
    resumed = GameController.resume(Settings(saves_dir=tmp_path), tmp_path / "game.json", host)
    assert any("played on scripted.gguf" in notice for notice in resumed.take_notices())
    assert resumed.take_notices() == []


# -- the property ------------------------------------------------------------------------------

OPERATIONS = st.lists(
    st.sampled_from(
        ["play", "pick", "undo", "redo", "retry", "edit", "cancel", "save_as", "settings", "reload"]
    ),
    min_size=1,
    max_size=25,
)


class Recording(ScriptedBackend):
    """Checks every request against the context, as a real model would fail on it."""

    def generate(self, segments, request, on_token, on_progress=None):
        prompt = sum(len(segment) for segment in segments)
        assert prompt + request.max_tokens <= self.n_ctx, "prompt + reply outgrow n_ctx"
        return super().generate(segments, request, on_token, on_progress)


def varied(prompt: str) -> str:
    turn = prompt.count("<|model|>")
    if turn % 4 == 3:  # now and then a reply with no options (free mode asks again)
        return f"Turn {turn}: a long silence. " * (turn % 7 + 1)
    return f"Turn {turn}: {'dust ' * (turn % 9)}\n\n- A{turn}.\n- B{turn}.\n- C{turn}."


def comparable(game: GameController) -> dict:
    document = snapshot(game.session, name="x", game_id="g", created_at=None, model=MODEL)
    return document.model_dump(exclude={"updated_at", "created_at"})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS, mode=st.sampled_from(["guided", "free"]))
def test_no_sequence_of_operations_loses_a_turn_or_overflows(tmp_path_factory, operations, mode):
    folder = tmp_path_factory.mktemp("saves")
    host = ModelHost(lambda settings: Recording(replies=varied, n_ctx=settings.n_ctx))
    scenario_entry = ScenarioEntry(
        make_scenario(sampling={"max_tokens": 96}, choice_mode=mode), "t.yaml", "t", "T"
    )
    current = Settings(saves_dir=folder, n_ctx=512)
    game = GameController.new_game(current, scenario_entry, host, name="prop")
    game.play_opening()
    finished = [e.player.text for e in game.session.exchanges]
    for step, operation in enumerate(operations):
        before = [e.player.text for e in game.session.exchanges]
        if operation in ("play", "pick"):
            choices = game.session.choices
            action = choices[0] if operation == "pick" and choices else f"Action {step}."
            game.play(action)
            assert [e.player.text for e in game.session.exchanges] == [*before, action]
        elif operation in ("undo", "edit"):
            if before:
                game.undo() if operation == "undo" else game.edit()
                assert [e.player.text for e in game.session.exchanges] == before[:-1]
        elif operation == "redo":
            if game.session.undone:
                game.redo()
        elif operation == "retry":
            if before:
                game.retry()
                assert [e.player.text for e in game.session.exchanges] == before
        elif operation == "cancel":
            game.cancel()  # with no reply being written, the next turn is not affected
            game.play(f"After a cancel {step}.")
            assert game.session.exchanges[-1].player.text == f"After a cancel {step}."
            assert game.session.exchanges[-1].reply.text
        elif operation == "save_as":
            game.save_as(f"prop {step}")
        elif operation == "settings":
            current = current.model_copy(update={"n_ctx": 1024 if current.n_ctx == 512 else 512})
            other = GameController.new_game(current, scenario_entry, host, saving=False)
            other.close()
            assert not game.backend.closed
        elif operation == "reload":
            path = game.slot.path
            expected = comparable(game)
            game.close()
            game = GameController.resume(current, path, host)
            assert comparable(game) == expected
        finished = [e.player.text for e in game.session.exchanges]
        assert all(e.reply.text for e in game.session.exchanges)
    # What the game holds is what its save holds.
    assert load(game.slot.path).turn_count == len(finished)
    game.close()
