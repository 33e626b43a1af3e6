"""A scenario's written intro, its player's name and a character: prompt, session, headless,
saves."""

from __future__ import annotations

import io
import json

import pytest

from game.backends.scripted import ScriptedBackend
from game.controller import GameController
from game.headless import HeadlessGame
from game.prompt import METHARME, render
from game.saves import ModelInfo, new_session_from_save, snapshot
from game.scenario import render_system_prompt
from game.session import Session, SessionError
from tests.factories import REPLY, make_scenario

INTRO = {"text": "You wake in a cold hall.", "choices": ["Stand up.", "Call out."]}


def intro_session(**overrides: object) -> tuple[Session, ScriptedBackend]:
    backend = ScriptedBackend(replies=(REPLY,))
    scenario = make_scenario(intro=INTRO, player_name="Mara", **overrides)
    return Session(scenario, backend, METHARME, seed=1), backend


def test_the_intro_is_the_first_model_turn_without_generating():
    session, backend = intro_session()
    assert backend.calls == []
    assert session.turn == 1 and session.intro_turns == 1
    assert session.exchanges[0].narrative == "You wake in a cold hall."
    assert session.choices == ["Stand up.", "Call out."]
    session.play("Stand up.")
    prompt = backend.detokenize(backend.calls[0].prompt)
    expected = render(
        "metharme",
        session.system_prompt,
        [
            ("user", "Start!"),
            ("model", "You wake in a cold hall.\n\n- Stand up.\n- Call out."),
            ("user", "Stand up."),
        ],
    )
    assert prompt == expected


def test_the_intro_cannot_be_undone_or_retried():
    session, _ = intro_session()
    with pytest.raises(SessionError):
        session.undo()
    with pytest.raises(SessionError):
        session.retry()
    session.play("Call out.")
    session.undo()
    assert session.turn == 1


def test_player_name_and_character_in_the_system_prompt():
    scenario = make_scenario(player_name="Mara")
    assert "The player's name is Mara." in render_system_prompt(scenario)
    character = make_scenario(
        setting=None,
        player=None,
        player_name="Mara",
        character={"name": "Ivo", "description": "A ferryman.", "post_history": "Be terse."},
    )
    prompt = render_system_prompt(character)
    assert "You play Ivo" in prompt and "the user plays Mara" in prompt
    assert "Ivo: A ferryman." in prompt
    # Post-history instructions come last, just before the options rule.
    assert prompt.index("Be terse.") > prompt.index("The player's name is Mara.")
    assert prompt.rstrip().endswith('each line starting with "- ".')


def test_character_and_setting_are_two_ways():
    with pytest.raises(ValueError, match="replace 'setting'"):
        make_scenario(character={"name": "Ivo"})


def test_headless_shows_the_intro_and_plays_on():
    session, backend = intro_session()
    feed = iter(["2"])
    out, err = io.StringIO(), io.StringIO()
    game = HeadlessGame(
        GameController(session, None), read_line=lambda: next(feed, None), out=out, err=err
    )
    assert game.run() == 0
    text = out.getvalue()
    assert "You wake in a cold hall.\n\n  1. Stand up.\n  2. Call out.\n" in text
    assert "resuming" not in text
    assert len(backend.calls) == 1  # only the turn the player played
    assert session.exchanges[-1].player.text == "Call out."


def test_headless_json_intro_line():
    session, _ = intro_session()
    out = io.StringIO()
    HeadlessGame(
        GameController(session, None),
        read_line=lambda: None,
        out=out,
        err=io.StringIO(),
        json_mode=True,
    ).run()
    first = json.loads(out.getvalue().splitlines()[0])
    assert first == {
        "turn": 1,
        "intro": True,
        "narrative": "You wake in a cold hall.",
        "choices": ["Stand up.", "Call out."],
    }


def test_a_saved_intro_game_resumes_with_the_same_prompt():
    session, _ = intro_session()
    session.play("Stand up.")
    save = snapshot(session, name="x", model=ModelInfo(file="m.gguf"))
    resumed = new_session_from_save(save, ScriptedBackend(replies=(REPLY,)), METHARME)
    assert resumed.intro_turns == 1 and resumed.turn == 2
    assert resumed.prompt_text("Look.") == session.prompt_text("Look.")
