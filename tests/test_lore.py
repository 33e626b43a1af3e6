"""Lore: triggering, the budget, where it goes in the prompt, and what it costs the cache."""

from __future__ import annotations

import pytest

from game import lore
from game.backends.scripted import ScriptedBackend
from game.prompt import CHATML, METHARME
from game.scenario import LoreEntry, render_system_prompt
from game.session import Session
from tests.factories import make_scenario

CLOCK = LoreEntry(
    keys=["clock", "grandfather clock"], text="The clock stopped at 11:52.", priority=10
)
CELLAR = LoreEntry(keys=["cellar"], text="The cellar door is locked from inside.", priority=5)
PORTRAIT = LoreEntry(keys=["Eleanor"], text="Eleanor's portrait watches the stairs.")
RULES = LoreEntry(constant=True, text="The house never lies.")


def words(text: str) -> int:
    return len(text.split())


def test_keywords_match_whole_words_in_any_case():
    assert lore.triggered([CLOCK], "I wind the CLOCK.") == [CLOCK]
    assert lore.triggered([CLOCK], "A grandfather clock ticks") == [CLOCK]
    assert lore.triggered([CLOCK], "The clockwork whirs.") == []
    assert lore.triggered([CELLAR, PORTRAIT], "eleanor smiles") == [PORTRAIT]


def test_highest_priority_first_within_the_budget():
    recent = "The clock, the cellar and Eleanor."
    assert lore.select([PORTRAIT, CELLAR, CLOCK], recent, 100, words) == [CLOCK, CELLAR, PORTRAIT]
    # 5 + 7 words fit in 12; the portrait (5 more) does not.
    assert lore.select([PORTRAIT, CELLAR, CLOCK], recent, 12, words) == [CLOCK, CELLAR]
    # An entry too big for what is left is skipped, and a smaller one after it still fits.
    assert lore.select([PORTRAIT, CELLAR, CLOCK], recent, 10, words) == [CLOCK, PORTRAIT]
    assert lore.select([CLOCK], recent, 0, words) == []


def test_constant_entries_are_in_the_system_prompt_not_triggered():
    assert lore.triggered([RULES], "anything the house") == []
    assert "The house never lies." in render_system_prompt(make_scenario(lore=[RULES.model_dump()]))


def test_lore_entries_need_keys_unless_constant():
    with pytest.raises(ValueError, match="needs 'keys'"):
        LoreEntry(text="floating")


REPLY = "The hall is quiet.\n\n- Go on.\n- Listen.\n- Wait."


def lore_session(fmt=METHARME) -> tuple[Session, ScriptedBackend]:
    backend = ScriptedBackend(replies=(REPLY,), n_ctx=4096)
    scenario = make_scenario(
        lore=[CLOCK.model_dump(), CELLAR.model_dump(), RULES.model_dump()],
        sampling={"max_tokens": 120},
        choice_mode="free",
    )
    return Session(scenario, backend, fmt), backend


def test_triggered_lore_is_a_system_segment_before_the_new_turn():
    session, backend = lore_session()
    session.play("Start!")
    result = session.play("I look at the clock.")
    prompt = backend.detokenize(backend.calls[-1].prompt)
    assert prompt.endswith(
        "<|system|>The clock stopped at 11:52.<|user|>I look at the clock.<|model|>"
    )
    assert prompt.startswith(f"<|system|>{session.system_prompt}<|user|>Start!<|model|>")
    assert result.lore == ["clock"]
    assert session.prompt_text("The cellar, then.").endswith(
        "<|system|>The cellar door is locked from inside.<|user|>The cellar, then.<|model|>"
    )


def test_lore_is_not_kept_in_the_transcript_and_costs_only_itself():
    session, backend = lore_session()
    session.play("Start!")
    session.play("I look at the clock.")
    lore_tokens = len(
        backend.tokenize("<|system|>", special=True)
        + backend.tokenize("The clock stopped at 11:52.", special=False)
    )
    new_turn = len(session.exchanges[-1].player) + len(backend.tokenize("<|model|>", special=True))
    # The turn that triggers lore evaluates the lore and the new turn only.
    assert backend.calls[-1].evaluated == lore_tokens + new_turn
    # Next turn the lore has left the prompt: its span is dropped from the cache and the rest
    # shifted, so again only the new turn is evaluated.
    session.play("I walk on.")
    assert backend.calls[-1].evaluated == len(session.exchanges[-1].player) + len(
        backend.tokenize("<|model|>", special=True)
    )
    assert "11:52" not in backend.detokenize(backend.calls[-1].prompt)


def test_the_last_reply_triggers_lore_too():
    backend = ScriptedBackend(replies=("A cellar door creaks.\n\n- a\n- b\n- c",), n_ctx=4096)
    session = Session(
        make_scenario(lore=[CELLAR.model_dump()], choice_mode="free"), backend, CHATML
    )
    session.play("Start!")
    assert session.play("I wait.").lore == ["cellar"]


def test_lore_counts_against_the_window():
    backend = ScriptedBackend(replies=(REPLY,), n_ctx=700)
    big = LoreEntry(keys=["clock"], text="tick " * 150)
    session = Session(
        make_scenario(
            lore=[big.model_dump()],
            lore_budget=400,
            sampling={"max_tokens": 100},
            choice_mode="free",
        ),
        backend,
        METHARME,
    )
    for turn in range(8):
        session.play(f"I look at the clock {turn}.")
        assert len(backend.calls[-1].prompt) <= session.budget


@pytest.mark.model
def test_a_lore_turn_on_the_real_model_evaluates_only_the_lore_and_the_turn():
    from game.backends.llamacpp import LlamaCppBackend
    from game.config import embedded_model_path

    backend = LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=3)
    scenario = make_scenario(
        lore=[CLOCK.model_dump(), CELLAR.model_dump()],
        sampling={"max_tokens": 24},
        choice_mode="free",
    )
    session = Session(scenario, backend, CHATML, seed=3, fixed_reply_tokens=24)
    session.play("Start!")
    session.play("I walk down the hall.")
    result = session.play("I look at the grandfather clock.")
    lore_tokens = len(
        backend.tokenize("<|im_start|>system\n", special=True)
        + backend.tokenize(CLOCK.text, special=False)
        + backend.tokenize("<|im_end|>\n", special=True)
    )
    turn_tokens = len(session.exchanges[-1].player) + len(
        backend.tokenize(CHATML.model_prefix, special=True)
    )
    carried = (
        len(backend.tokenize(CHATML.model_suffix, special=True)) + 1
    )  # last reply's close, last token
    assert result.lore == ["clock"]
    assert result.stats.evaluated_tokens == lore_tokens + turn_tokens + carried
    assert result.stats.evaluated_tokens < result.stats.prompt_tokens / 3
    after = session.play("I go to the kitchen.")
    # The last reply may mention the clock again (the model often repeats lore), and then the
    # lore fires again; either way the span of the old lore is dropped, not re-read.
    again = lore_tokens if after.lore == ["clock"] else 0
    turn_tokens = len(session.exchanges[-1].player) + len(
        backend.tokenize(CHATML.model_prefix, special=True)
    )
    assert after.stats.evaluated_tokens == again + turn_tokens + carried
    backend.close()


def test_secondary_keys_must_appear_too():
    entry = LoreEntry(keys=["boat"], secondary_keys=["night", "landing"], text="Gone.")
    assert lore.triggered([entry], "the boat at noon") == []
    assert lore.triggered([entry], "the boat at the landing") == [entry]


def test_disabled_entries_never_fire_nor_sit_in_the_system_prompt():
    off = LoreEntry(keys=["boat"], text="Off.", enabled=False)
    always_off = LoreEntry(constant=True, text="Never said.", enabled=False)
    assert lore.triggered([off], "the boat") == []
    prompt = render_system_prompt(make_scenario(lore=[always_off.model_dump()]))
    assert "Never said." not in prompt
