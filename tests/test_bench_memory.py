"""The memory benchmarks on the scripted backend: ``bench context``'s strategy (d) counts the
background work memory adds and keeps the visible cost of (c); ``bench recall`` plants facts,
slides the window and scores the answers. The real-model runs are in test_bench.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from game.backends.scripted import ScriptedBackend
from game.bench import context, recall
from game.prompt import METHARME
from game.scenario import load_scenario
from tests.factories import BUILTIN_SCENARIO

FACTS = recall.FACTS


def oracle(prompt: str) -> str:
    """A model with a perfect memory of what its prompt holds: summaries keep every fact they
    are shown; a question is answered when its fact is in the prompt, else not."""
    if "Write the new story so far." in prompt:
        kept = [fact.memory for fact in FACTS if fact.plant in prompt or fact.memory in prompt]
        return " ".join(kept) or "Ada walked through the house."
    before, last = prompt.rsplit("<|user|>", 1)
    for fact in FACTS:
        if fact.question in last:
            if fact.plant in before or fact.memory in before:
                return f"You remember it well. {fact.memory}"
            return "You cannot remember."
    return "The hall is dark and cold, and something creaks above you on the stairs."


def scripted_context() -> tuple[dict, list]:
    backends: list[ScriptedBackend] = []

    def opener(cache_mode):
        backends.append(ScriptedBackend(replies=oracle, n_ctx=1400, cache_mode=cache_mode))
        return backends[-1]

    result = context.run(
        Path("scripted"),
        load_scenario(BUILTIN_SCENARIO),
        METHARME,
        turns=30,
        n_ctx=1400,
        reply_tokens=32,
        seed=1,
        opener=opener,
        model_name="scripted",
    )
    return result, backends


def test_bench_context_counts_the_background_work_of_memory_beside_its_visible_cost():
    result, backends = scripted_context()
    assert [s["key"] for s in result["strategies"]] == ["a", "b", "c", "d"]
    # (a) to (c) never summarize; (d) writes summaries aside and evaluates them in place.
    for backend in backends[:3]:
        assert {call.kind for call in backend.calls} == {"turn"}
    kinds = [call.kind for call in backends[3].calls]
    asides, prepares = kinds.count("aside"), kinds.count("prepare")
    work = result["background"]
    assert work["summaries"] == asides > 0 and work["rounds"] >= asides
    assert prepares > 0 and work["prepare_evaluated_tokens"] > 0
    assert work["summary_evaluated_tokens"] == sum(
        len(call.prompt) for call in backends[3].calls if call.kind == "aside"
    )
    assert work["summary_generated_tokens"] > 0 and work["seconds"] >= work["summary_s"] > 0
    assert (
        work["evaluated_tokens"]
        == work["summary_evaluated_tokens"] + work["prepare_evaluated_tokens"]
    )
    assert work["problems"] == [] and work["cancelled"] == 0
    assert len(result["per_turn_background"]) == work["rounds"]
    # The visible cost: the player's turns read what is new, as (c)'s do.
    c, d = result["strategies"][2], result["strategies"][3]
    assert d["slides"] >= 2
    assert 0.1 < d["evaluated_tokens"] / c["evaluated_tokens"] < 10
    assert result["targets"]["d_evaluated_over_new"] <= context.TARGETS["evaluated_over_new"]
    assert set(result["targets"]) == {f"{key}_{name}" for key in "cd" for name in context.TARGETS}
    assert json.loads(json.dumps(result)) == result
    table = context.render(result)
    assert "(d) memory: shift + story-so-far summaries" in table
    assert "background work of (d), while the player read:" in table
    assert f"summaries written:  {work['summaries']} in {work['rounds']} idle rounds" in table
    assert "targets for (c):" in table and "targets for (d):" in table


def test_the_strategies_without_memory_keep_summaries_off(monkeypatch):
    """Summaries on would keep room in the window for a summary that never comes: (a) to (c)
    must play as they did before memory existed."""
    made: list[bool] = []
    real = context.Session

    def spy(*args, **kwargs):
        made.append(kwargs["summaries"])
        return real(*args, **kwargs)

    monkeypatch.setattr(context, "Session", spy)
    scripted_context()
    assert made == [False, False, False, True]


# -- recall -------------------------------------------------------------------------------------


def scripted_recall(**options) -> dict:
    return recall.run(
        lambda: ScriptedBackend(replies=oracle, n_ctx=1400),
        load_scenario(BUILTIN_SCENARIO),
        METHARME,
        model_name="scripted",
        small_model=False,
        reply_tokens=96,
        **options,
    )


def test_bench_recall_recalls_with_memory_on_and_forgets_with_it_off():
    result = scripted_recall(memory_text=True)
    on, off, text = result["runs"]
    assert [run["mode"] for run in result["runs"]] == ["on", "off", "memory text"]
    assert on["share"] == 1.0 and on["recalled"] == on["facts"] == len(FACTS)
    assert off["share"] == 0.0 and text["share"] == 1.0
    for run in (on, off, text):
        assert run["planted_left_window"] and run["slides"] >= 3
        assert run["turns"] == 1 + len(FACTS) + run["filler_turns"]
    assert on["summaries"] >= 1 and off["summaries"] == text["summaries"] == 0
    assert on["background_s"] > 0
    assert all(answer["in_summary"] for answer in on["answers"])
    assert not any(answer["in_summary"] for answer in off["answers"])
    assert result["numbers_mean_little"] is False and result["note"] is None
    assert json.loads(json.dumps(result)) == result
    table = recall.render(result)
    assert "memory on    6/6" in table and "memory off   0/6" in table
    assert "note:" not in table


def test_bench_recall_says_when_the_numbers_mean_little_and_honours_its_sizes():
    result = recall.run(
        lambda: ScriptedBackend(replies=oracle, n_ctx=1400),
        load_scenario(BUILTIN_SCENARIO),
        METHARME,
        model_name="scripted",
        small_model=True,
        facts=2,
        min_slides=1,
        max_filler=3,
    )
    assert result["numbers_mean_little"] is True and "too small" in result["note"]
    assert [len(run["answers"]) for run in result["runs"]] == [2, 2]
    assert all(run["filler_turns"] <= 3 for run in result["runs"])
    # Three filler turns are too few for the facts to leave the window: the table says so.
    assert not result["runs"][1]["planted_left_window"]
    table = recall.render(result)
    assert f"note: {recall.SMALL_MODEL_NOTE}" in table
    assert "  NO  " in table


# -- scoring ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "answer", "expected"),
    [
        ("Her name is MARIBEL, you recall.", "Maribel", True),
        ("Her name is Maribelle.", "Maribel", False),
        ("The code is 4-1-7.", "4-1-7", True),
        ("The code: 4 1 7", "4-1-7", True),
        ("It was four, one, seven.", "4-1-7", True),
        ("Four-one-seven, of course.", "417", True),
        ("The code is 4-1-70.", "4-1-7", False),
        ("The code is 14-1-7.", "4-1-7", False),
        ("It is 4-1-8.", "4-1-7", False),
        ("Twenty-three coins.", "23", True),
        ("twenty three coins", "23", True),
        ("There are 230 coins.", "23", False),
        ("It is in your left boot.", "left boot", True),
        ("It is in your left  boots!", "left boot", True),
        ("It is in your left shoe.", "left boot", False),
        ("Under the rug.", "rug", True),
        ("Under the rugged stone.", "rug", False),
        ("The innkeeper\u2019s name", "innkeeper's name", True),
        ("", "rug", False),
        ("anything", "", False),
    ],
)
def test_recalled_normalizes_case_and_numbers(reply, answer, expected):
    assert recall.recalled(reply, answer) is expected


UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def in_words(number: int) -> str:
    if number < 10:
        return UNITS[number]
    if number < 20:
        return TEENS[number - 10]
    tens, unit = divmod(number, 10)
    return TENS[tens - 2] + (f"-{UNITS[unit]}" if unit else "")


# Text around an answer that cannot glue onto it: it starts and ends with a space.
around = st.text(alphabet="abcxyz ,.!?'\n", max_size=20).map(lambda text: f" {text} ")
separators = st.sampled_from(["", "-", " ", ", ", ".", " - ", "\u2013"])


@settings(max_examples=200, deadline=None)
@given(
    digits=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    gap=separators,
    before=around,
    after=around,
)
def test_a_number_is_recalled_however_its_digits_are_separated(digits, gap, before, after):
    answer = "-".join(str(digit) for digit in digits)
    reply = before + gap.join(str(digit) for digit in digits) + after
    assert recall.recalled(reply, answer)
    # ... and not when another digit is glued on. (Not the same digit again: separators are
    # optional, so "99-9" does hold "9-9".)
    glued = str((digits[0] + 1) % 10)
    assert not recall.recalled(before + glued + reply[len(before) :], answer)


@settings(max_examples=200, deadline=None)
@given(number=st.integers(0, 99), before=around, after=around, upper=st.booleans())
def test_a_number_in_words_is_the_number(number, before, after, upper):
    words = in_words(number)
    reply = before + (words.upper() if upper else words.capitalize()) + after
    assert recall.recalled(reply, str(number))
    assert not recall.recalled(reply, str(number + 100))


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["Maribel", "Biscuit", "left boot", "rug", "brass key"]),
    flips=st.lists(st.booleans(), min_size=12, max_size=12),
    before=around,
    after=around,
)
def test_case_never_matters(name, flips, before, after):
    mixed = "".join(
        char.upper() if flip else char.lower() for char, flip in zip(name, flips, strict=False)
    )
    assert recall.recalled(before + mixed + after, name)
    assert recall.recalled(before + name + after, mixed)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80), answer=st.text(max_size=12))
def test_scoring_any_text_never_fails_and_normalizing_twice_changes_nothing(text, answer):
    once = recall.normalize(text)
    assert recall.normalize(once) == once
    assert isinstance(recall.recalled(text, answer), bool)
    if recall.normalize(answer):
        assert recall.recalled(f"{text}\nAnswer: {answer} (end)", answer)
