"""Cache planning (pure) and the session's cache bookkeeping against the scripted backend."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from game.backends.scripted import ScriptedBackend
from game.kvcache import (
    MIN_REPLACE_MATCH,
    MIN_SHIFT_MATCH,
    CachePlan,
    apply,
    plan,
    segment_starts,
)
from game.prompt import METHARME
from game.session import Session
from tests.factories import make_scenario

SYSTEM = list(range(100, 140))
E1, E2, E3 = list(range(200, 230)), list(range(300, 330)), list(range(400, 430))
REPLY_TAIL = [500, 501]
NEW = [600, 601, 602]


def test_none_reuses_nothing():
    assert plan(SYSTEM, SYSTEM + NEW, "none") == CachePlan(None, 0)


def test_prefix_reuses_the_common_prefix():
    assert plan(SYSTEM + E1, SYSTEM + E1 + NEW, "prefix") == CachePlan(None, len(SYSTEM + E1))
    # A dropped span breaks the prefix: everything after the system prompt is read again.
    assert plan(SYSTEM + E1 + E2, SYSTEM + E2 + NEW, "prefix") == CachePlan(None, len(SYSTEM))


def test_the_last_prompt_token_is_always_evaluated():
    assert plan(SYSTEM + E1, SYSTEM + E1, "prefix").reuse == len(SYSTEM + E1) - 1
    assert plan(SYSTEM, [], "shift") == CachePlan(None, 0)


def test_shift_drops_the_span_that_left_the_window():
    cached = SYSTEM + E1 + E2 + E3 + REPLY_TAIL
    prompt = SYSTEM + E3 + REPLY_TAIL + NEW
    result = plan(cached, prompt, "shift")
    assert result.drop == (len(SYSTEM), len(SYSTEM + E1 + E2))
    assert result.reuse == len(SYSTEM + E3 + REPLY_TAIL)
    assert apply(cached, prompt, result)[: result.reuse] == prompt[: result.reuse]


def test_shift_ignores_a_short_coincidental_match():
    cached = SYSTEM + E1 + NEW[:1] + E2
    prompt = SYSTEM + NEW[:1] + list(range(700, 740))
    assert plan(cached, prompt, "shift") == CachePlan(None, len(SYSTEM))


def test_shift_accepts_a_short_tail_that_runs_to_the_end_of_the_cache():
    tail = list(range(800, 800 + MIN_SHIFT_MATCH // 2))
    cached = SYSTEM + E1 + tail
    prompt = SYSTEM + tail + NEW
    assert plan(cached, prompt, "shift") == CachePlan(
        (len(SYSTEM), len(SYSTEM + E1)), len(SYSTEM + tail)
    )


def test_shift_replaces_an_old_summary_by_a_new_one_evaluated_in_place():
    old_summary, new_summary = list(range(900, 910)), list(range(950, 975))
    kept = list(range(1000, 1000 + 2 * MIN_REPLACE_MATCH))
    cached = SYSTEM + old_summary + E1 + E2 + kept + REPLY_TAIL
    prompt = SYSTEM + new_summary + kept + NEW
    result = plan(cached, prompt, "shift")
    start = len(SYSTEM)
    assert result.drop == (start, start + len(old_summary + E1 + E2))
    assert result.insert == len(new_summary)
    assert result.reuse == len(SYSTEM + new_summary + kept)
    assert result.evaluated(len(prompt)) == len(new_summary + NEW)
    assert apply(cached, prompt, result)[: result.reuse] == prompt[: result.reuse]


def test_a_replacement_reuses_the_kept_tail_not_a_quote_of_a_dropped_exchange():
    # The new summary quotes a run of an exchange that left the window: aligning on the quote
    # would cost the whole kept tail, so the kept tail is what lines up.
    quote = list(range(700, 700 + MIN_REPLACE_MATCH + 4))
    tail = list(range(1000, 1000 + 3 * MIN_REPLACE_MATCH))
    cached = SYSTEM + E1 + quote + E2 + tail
    prompt = [*SYSTEM, 5, *quote, 6, *tail]
    result = plan(cached, prompt, "shift")
    assert result.drop == (len(SYSTEM), len(SYSTEM + E1 + quote + E2))
    assert result.insert == len([5, *quote, 6])
    assert result.reuse == len(prompt) - 1


def test_a_replacement_at_a_segment_start_after_a_token_both_segments_end_with():
    # ChatML closes every segment with "<|im_end|>\n": the token before the kept exchanges is
    # the same in the cache and the prompt, but the run is measured from the segment start.
    end = [3]
    old_summary, new_summary = [*range(900, 910), *end], [*range(950, 975), *end]
    kept = list(range(1000, 1000 + 2 * MIN_REPLACE_MATCH))
    cached = SYSTEM + old_summary + E1 + end + kept
    segments = [SYSTEM, new_summary, kept]
    prompt = SYSTEM + new_summary + kept + NEW
    result = plan(cached, prompt, "shift", segment_starts(segments))
    assert result.drop == (len(SYSTEM), len(SYSTEM + old_summary + E1 + end))
    assert result.insert == len(new_summary)
    assert result.reuse == len(SYSTEM + new_summary + kept)


def test_a_replacement_needs_a_long_run():
    short = list(range(700, 700 + MIN_REPLACE_MATCH - 1))
    cached = SYSTEM + E1 + short + [1]
    prompt = [*SYSTEM, 5, 6, *short, 2]
    assert plan(cached, prompt, "shift") == CachePlan(None, len(SYSTEM))


tokens = st.lists(st.integers(0, 6), max_size=60)
long_tokens = st.lists(st.integers(0, 3), max_size=200)


@given(cached=long_tokens, prompt=long_tokens.filter(bool))
def test_a_replacing_plan_leaves_a_cache_that_starts_like_the_prompt(cached, prompt):
    result = plan(cached, prompt, "shift")
    assert apply(cached, prompt, result)[: result.reuse] == prompt[: result.reuse]
    assert 0 <= result.evaluated(len(prompt)) <= len(prompt)


@given(cached=tokens, prompt=tokens.filter(bool), mode=st.sampled_from(["none", "prefix", "shift"]))
def test_a_plan_always_leaves_a_cache_that_starts_like_the_prompt(cached, prompt, mode):
    result = plan(cached, prompt, mode)
    kept = apply(cached, prompt, result)[: result.reuse]
    assert kept == prompt[: result.reuse]
    assert result.reuse < len(prompt)
    if mode != "none":
        prefix = 0
        while prefix < min(len(cached), len(prompt)) and cached[prefix] == prompt[prefix]:
            prefix += 1
        assert result.reuse >= min(prefix, len(prompt) - 1)


# -- the session's bookkeeping on the scripted backend --------------------------------------

REPLY = "The hall goes on.\n\n- Go on.\n- Turn back.\n- Wait."


def session_on(mode: str, n_ctx: int = 700) -> tuple[Session, ScriptedBackend]:
    backend = ScriptedBackend(replies=(REPLY,), n_ctx=n_ctx, cache_mode=mode)  # type: ignore[arg-type]
    # Room enough that every reply ends on the model's end token, so all of it is cached.
    scenario = make_scenario(sampling={"max_tokens": 120}, choice_mode="free")
    return Session(scenario, backend, METHARME, summaries=False), backend


def new_tokens(session: Session, backend: ScriptedBackend) -> int:
    """What a turn cannot have cached: its player segment and the model's prefix (Metharme
    closes a reply with nothing, and the scripted replies end on EOS, so all of it is cached)."""
    return len(session.exchanges[-1].player) + len(backend.tokenize("<|model|>", special=True))


def test_shift_evaluates_only_new_tokens_across_slides():
    session, backend = session_on("shift")
    slides = 0
    for turn in range(40):
        result = session.play(f"I walk on to door number {turn}.")
        slides += result.slid
        if turn:
            assert backend.calls[-1].evaluated == new_tokens(session, backend), turn
    assert slides >= 3


def test_prefix_only_reads_the_window_again_after_a_slide():
    session, backend = session_on("prefix")
    costs = []
    for turn in range(40):
        result = session.play(f"I walk on to door number {turn}.")
        costs.append((result.slid, backend.calls[-1].evaluated, new_tokens(session, backend)))
    slid = [(evaluated, new) for was_slid, evaluated, new in costs if was_slid]
    assert slid and all(evaluated > 3 * new for evaluated, new in slid)


def test_retry_evaluates_nothing_but_the_last_prompt_token():
    session, backend = session_on("shift")
    session.play("Start!")
    session.play("I go on.")
    session.retry()
    assert backend.calls[-1].evaluated == 1


def test_undo_then_play_reuses_the_kept_turns():
    session, backend = session_on("shift")
    for action in ("Start!", "I go on.", "I turn back."):
        session.play(action)
    session.undo()
    session.undo()
    session.play("I wait.")
    # The kept turns are not read again; even the start of the new action ("<|user|>I ") was
    # still cached from the turn that was taken back.
    assert 0 < backend.calls[-1].evaluated <= new_tokens(session, backend)


def test_a_fresh_cache_reads_the_window_once_then_turns_are_incremental():
    session, backend = session_on("shift")
    for turn in range(6):
        session.play(f"Action {turn}.")
    backend.reset_cache()  # as after loading a save into a freshly loaded model
    result = session.play("I look back.")
    assert result.stats.evaluated_tokens == result.stats.prompt_tokens
    session.play("I go on.")
    assert backend.calls[-1].evaluated == new_tokens(session, backend)


def test_a_replacement_at_a_segment_start_is_found_when_the_tokens_before_it_agree():
    # The new summary and the dropped note both end with a newline: the kept exchange still
    # starts where its segment starts.
    newline = [7]
    kept = list(range(1000, 1000 + 2 * MIN_REPLACE_MATCH))
    cached = [*SYSTEM, 8, 9, *newline, *kept]
    summary = [5, 6, *newline]
    prompt = SYSTEM + summary + kept
    boundaries = {0, len(SYSTEM), len(SYSTEM + summary)}
    result = plan(cached, [*prompt, -1], "shift", boundaries)
    assert result.insert == len(summary)
    assert result.reuse == len(prompt)
