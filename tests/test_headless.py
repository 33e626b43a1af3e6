"""The headless loop on the scripted backend: commands, errors and output channels."""

from __future__ import annotations

import io
import json

from game.backends.scripted import ScriptedBackend
from game.controller import GameController
from game.headless import HeadlessGame
from game.prompt import METHARME
from game.session import Session
from tests.factories import make_scenario


def play(
    lines: list[str], *, json_mode: bool = False, backend: ScriptedBackend | None = None
) -> tuple[str, str, Session]:
    session = Session(make_scenario(), backend or ScriptedBackend(), METHARME)
    feed = iter(lines)
    out, err = io.StringIO(), io.StringIO()
    game = HeadlessGame(
        GameController(session, None),
        read_line=lambda: next(feed, None),
        out=out,
        err=err,
        json_mode=json_mode,
    )
    assert game.run() == 0
    return out.getvalue(), err.getvalue(), session


def test_numbers_pick_choices():
    out, _, session = play(["2"])
    assert "  1. Go north.\n  2. Go south.\n  3. Wait.\n" in out
    assert session.exchanges[-1].player.text == "Go south."


def test_commands_and_errors_go_to_stderr():
    out, err, session = play(
        ["/undo", "/undo", "/retry", "/dance", "/help", "", "free text", "/quit", "ignored"]
    )
    assert "error: there is no turn to undo" in err
    assert "error: there is no reply to retry" in err
    assert "error: unknown command /dance" in err
    assert "  /retry                              write the last reply again\n" in err
    assert [ex.player.text for ex in session.exchanges] == ["free text"]
    assert "(took back: Start!)" in out


def test_backend_failure_is_reported_and_the_game_goes_on():
    backend = ScriptedBackend(fail_on_calls=frozenset({2}))
    _, err, session = play(["Go.", "Go again."], backend=backend)
    assert "error: scripted failure on call 2" in err
    assert session.turn == 2


def test_json_mode_keeps_stdout_pure():
    out, err, _ = play(["1", "/undo", "/retry"], json_mode=True)
    turns = [json.loads(line) for line in out.splitlines()]
    assert [turn["turn"] for turn in turns] == [1, 2, 1]
    assert "took back" in err


def test_autosave_and_save_as(tmp_path):
    from game.saves import ModelInfo, SaveFolder, SaveSlot, load

    session = Session(make_scenario(), ScriptedBackend(), METHARME)
    slot = SaveSlot.new(SaveFolder(tmp_path), "first", ModelInfo(file="m.gguf"))
    feed = iter(["Go.", "/save", "/save Second Name", "Again.", "/undo", "/redo", "/redo"])
    out, err = io.StringIO(), io.StringIO()
    game = GameController(session, slot)
    HeadlessGame(game, read_line=lambda: next(feed, None), out=out, err=err).run()
    assert load(tmp_path / "first.json").turn_count == 2
    assert load(tmp_path / "second-name.json").turn_count == 3
    assert f"(saved to {tmp_path / 'second-name.json'})" in err.getvalue()
    assert "error: there is no turn to redo" in err.getvalue()
    assert "(put back: Again.)" in out.getvalue()


def test_reading_progress_goes_to_stderr_and_is_cleared_before_the_reply():
    session = Session(
        make_scenario(setting="The house is old. " * 60), ScriptedBackend(read_batch=32), METHARME
    )
    out, err = io.StringIO(), io.StringIO()
    feed = iter(["/quit"])
    game = HeadlessGame(
        GameController(session, None),
        read_line=lambda: next(feed, None),
        out=out,
        err=err,
        stream=True,
        progress=True,
    )
    assert game.run() == 0
    text = err.getvalue()
    assert "\r\x1b[Kreading the story: 32/" in text
    assert text.endswith("\r\x1b[K")  # the line is wiped once the prompt is read
    assert "reading the story" not in out.getvalue()


def test_json_turns_carry_the_reading_time():
    out, err, _ = play(["1"], json_mode=True)
    turns = [json.loads(line) for line in out.splitlines()]
    assert all(turn["reading_s"] >= 0 and turn["stored_tokens"] == 0 for turn in turns)
    assert "reading the story" not in err  # no tty, no progress
