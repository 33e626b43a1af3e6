"""Memory beyond the window on the scripted backend: what sits where in the prompt, what is
evaluated when, the summary written while the player reads and cancelled when they act."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from game.backends.base import BackendError
from game.backends.scripted import ScriptedBackend
from game.controller import GameController, MemoryTextError
from game.memory import SUMMARY_HEADER, StoryMemory, Summary, clean_summary
from game.prompt import METHARME
from game.session import Session
from game.transcript import closing_tokens
from tests.factories import make_scenario

SUMMARY = "Ann met the smith Bo, who owes her 7 coins, and took the brass key."


def reply_or_summary(prompt: str) -> str:
    """A turn's reply, or a summary when the prompt asks for one."""
    if "Write the new story so far." in prompt:
        covered = prompt.count("\n> ")
        return f"{SUMMARY} ({covered} events.)"
    turn = prompt.count("<|model|>")
    return f"Room {turn} is dim and the air is cold here.\n\n- North.\n- South.\n- Wait."


def game(n_ctx: int = 900, **scenario: object) -> tuple[GameController, ScriptedBackend]:
    backend = ScriptedBackend(replies=reply_or_summary, n_ctx=n_ctx)
    session = Session(
        make_scenario(sampling={"max_tokens": 60}, **scenario), backend, METHARME, seed=1
    )
    return GameController(session, None), backend


def play_until_slide(game: GameController) -> int:
    for turn in range(60):
        result = game.play(f"I walk to door {turn} and knock twice.").result
        if result.slid:
            return turn
    raise AssertionError("the window never slid")


def turn_calls(backend: ScriptedBackend) -> list:
    return [call for call in backend.calls if call.kind == "turn"]


def test_the_prompt_holds_memory_and_summary_after_the_system_prompt_and_the_note_before_the_action():
    controller, backend = game(memory="Ann is a locksmith.", authors_note="Keep it eerie.")
    controller.session.memory.add(Summary(0, "Nothing yet happened."))
    controller.play("I knock on the door.")
    prompt = backend.detokenize(backend.calls[0].prompt)
    system_end = prompt.index("<|system|>Memory")
    assert prompt.index("<|system|>" + SUMMARY_HEADER) > system_end
    assert prompt.index(SUMMARY_HEADER) < prompt.index("<|user|>")
    assert prompt.endswith(
        "<|system|>[Author's note: Keep it eerie.]<|user|>I knock on the door.<|model|>"
    )
    segments = controller.session.context_view("I knock again.")
    kinds = [part.kind for part in segments]
    assert kinds[:3] == ["system", "memory", "summary"]
    assert kinds[-2:] == ["note", "action"]
    assert "exchange" in kinds


def test_a_summary_is_written_aside_inserted_in_place_and_the_next_turn_reads_only_new_tokens():
    controller, backend = game()
    play_until_slide(controller)
    session = controller.session
    assert session.summary_pending and controller.has_background_work
    cache_before = backend.cached_tokens
    outcome = controller.work_in_background()
    assert outcome is not None and outcome.summary is not None and not outcome.cancelled
    assert outcome.through == session.window_start
    aside = [call for call in backend.calls if call.kind == "aside"]
    assert len(aside) == 1
    # The summary was written without touching the game's cache ...
    prepare = backend.calls[-1]
    assert prepare.kind == "prepare"
    # ... then put in place: only the summary's tokens were evaluated, not the window.
    summary_segment = session.pinned_parts()[-1]
    assert summary_segment[0] == "summary"
    # (Besides the summary, only the closing tokens of the last reply, which follow the tokens
    # the model generated, are read: every turn reads them.)
    closing = len(closing_tokens(backend, METHARME))
    assert 0 < prepare.inserted <= len(summary_segment[1])
    assert prepare.evaluated - prepare.inserted <= closing
    assert backend.cached_tokens != cache_before
    assert not session.summary_pending
    first_call = len(backend.calls)
    result = controller.play("I look around the room.").result
    new = len(session.exchanges[-1].player) + len(backend.tokenize("<|model|>", special=True))
    assert backend.calls[first_call].evaluated <= new  # the window is not read again
    assert SUMMARY in backend.detokenize(backend.calls[first_call].prompt)
    assert result.segments["summary"] == len(summary_segment[1])


def test_summaries_off_writes_none_and_keeps_no_room_for_one():
    controller, backend = game()
    controller.set_summaries(False)
    play_until_slide(controller)
    assert not controller.session.summary_pending
    assert controller.work_in_background() is None
    assert all(call.kind == "turn" for call in backend.calls)


def test_acting_while_the_summary_is_written_cancels_it_and_the_turn_goes_on_with_the_old():
    controller, backend = game()
    play_until_slide(controller)
    backend.token_delay_s = 0.02  # the summary takes a while
    worker = threading.Thread(target=controller.work_in_background)
    worker.start()
    deadline = time.monotonic() + 5
    while not controller.background_running and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    backend.token_delay_s = 0.0
    outcome_box: list = []
    controller.play("I run.")  # waits for the summary to stop, then plays
    worker.join(5)
    assert not worker.is_alive()
    prompt = backend.detokenize(turn_calls(backend)[-1].prompt)
    assert SUMMARY not in prompt
    assert controller.session.summary_pending  # tried again at the next idle moment
    outcome = controller.work_in_background()
    outcome_box.append(outcome)
    assert outcome is not None and outcome.summary is not None


def test_undo_brings_back_the_summary_that_served_that_window():
    controller, _ = game()
    play_until_slide(controller)
    controller.work_in_background()
    session = controller.session
    first = session.memory.active(session.window_start)
    assert first is not None
    while session.window_start >= first.through and len(session.exchanges) > 1:
        controller.undo()
    assert session.memory.active(session.window_start) != first
    while session.undone:
        controller.redo()
    assert session.memory.active(session.window_start) == first


def test_a_failed_turn_keeps_the_memory_as_it_was():
    controller, backend = game(memory="Ann is a locksmith.")
    controller.play("Go.")
    before = controller.session.memory.copy()
    backend.fail_on_calls = frozenset({len(backend.calls) + 1})
    with pytest.raises(BackendError):
        controller.play("Go on.")
    assert controller.session.memory == before


def test_memory_text_too_long_is_one_clear_line_and_changes_nothing():
    controller, _ = game(memory="Ann is a locksmith.")
    with pytest.raises(MemoryTextError) as error:
        controller.set_memory("x" * 5000)
    assert "\n" not in str(error.value)
    assert controller.session.memory.memory == "Ann is a locksmith."


def test_a_memory_too_big_for_the_context_is_refused_in_one_line():
    controller, _ = game(n_ctx=600)
    with pytest.raises(MemoryTextError, match=r"at most \d+ fit a context of 600"):
        controller.set_memory("The brass key opens the cellar. " * 40)
    assert controller.session.memory.memory == ""


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_any_memory_or_note_text_is_kept_safely_and_never_forges_a_turn(text):
    controller, backend = game()
    for setter in (controller.set_memory, controller.set_note):
        try:
            setter(text)
        except MemoryTextError as error:  # too long for the context: refused in one line
            assert "\n" not in str(error)
    controller.play("I wait.")
    prompt = backend.calls[0].prompt
    # Whatever was typed, the prompt has exactly one user turn and one open model turn.
    user = backend.tokenize("<|user|>", special=True)
    joined = backend.detokenize(prompt)
    assert joined.count("<|user|>") == 1, joined
    assert len(user) > 0


def test_clean_summary_drops_options_and_echoed_headers():
    text = "The story so far:\nAnn found a key. She left.\n- Go north.\nAnd then she"
    assert clean_summary(text) == "Ann found a key. She left."


def test_story_memory_keeps_summaries_ordered_and_forgets_the_ones_past_an_undo():
    memory = StoryMemory()
    memory.add(Summary(3, "a"))
    memory.add(Summary(6, "b"))
    assert memory.active(5) == Summary(3, "a")
    assert memory.active(6) == Summary(6, "b")
    memory.forget_after(5)
    assert memory.summaries == [Summary(3, "a")]


def test_a_scenario_memory_too_big_for_the_context_is_left_out_and_the_player_told():
    controller, backend = game(n_ctx=600, memory="The brass key opens the cellar. " * 60)
    assert controller.session.memory.memory.startswith("The brass key")  # kept, to shorten
    notices = controller.take_notices()
    assert any("memory is left out of the prompt" in notice for notice in notices)
    controller.play("I wait.")
    assert "brass key" not in backend.detokenize(backend.calls[0].prompt)


@settings(max_examples=25, deadline=None)
@given(
    n_ctx=st.integers(500, 1000),
    memory_words=st.integers(0, 60),
    note_words=st.integers(0, 40),
    lore_words=st.integers(1, 120),
    summary_budget=st.integers(32, 300),
)
def test_no_prompt_overflows_the_context_whatever_memory_note_lore_and_summary_take(
    n_ctx, memory_words, note_words, lore_words, summary_budget
):
    """The scripted backend refuses a prompt that leaves no room for the reply (a real model
    fails to find KV cells): memory, the summary's reserve, lore and note must yield first."""
    lore = [{"keys": ["door"], "text": " ".join(["The door is old."] * lore_words)}]
    scenario = {
        "memory": " ".join(["Ann is brave."] * memory_words) or None,
        "authors_note": " ".join(["Be eerie."] * note_words) or None,
        "lore": lore,
        "lore_budget": 4096,
        "summary_budget": summary_budget,
    }
    controller, backend = game(n_ctx=n_ctx, **scenario)
    for turn in range(8):
        controller.play(f"I open door {turn} and step through it.")
        controller.work_in_background()
    assert all(call.max_tokens >= 0 for call in backend.calls)


def test_the_context_view_adds_up_to_the_prompt_the_turn_sends():
    lore = [{"keys": ["door"], "text": "The door is older than the house."}]
    controller, backend = game(memory="Ann is brave.", authors_note="Be eerie.", lore=lore)
    controller.play("I look around.")
    view = controller.context_view("I open the door.")
    first = len(backend.calls)
    result = controller.play("I open the door.").result
    assert not result.slid
    model_open = len(controller.session._model_open)
    assert sum(part.tokens for part in view) + model_open == len(backend.calls[first].prompt)
    assert [part.kind for part in view][-3:] == ["lore", "note", "action"]
    assert result.segments["lore"] == next(p.tokens for p in view if p.kind == "lore")


def test_a_context_too_small_for_a_summary_plays_on_without_one():
    """A long system prompt in a small context: the summary's reserve would leave the turn no
    room (every action cut to nothing, then no KV cells), so there are no summaries."""
    # A system prompt of 406 scripted tokens; 134 left for the turns and their window.
    controller, backend = game(n_ctx=600, setting=" ".join(["A long hall of doors."] * 20))
    session = controller.session
    assert session.summary_room() == 0
    for turn in range(10):
        result = controller.play(f"I open door {turn}.").result
        assert not result.notices, result.notices
        controller.work_in_background()
    assert session.window_start > 0
    assert all(call.kind == "turn" for call in backend.calls)
