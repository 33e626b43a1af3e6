"""Choice modes on the scripted backend: option passes, duplicates, the free-mode fallback."""

from __future__ import annotations

from game.backends.scripted import ScriptedBackend
from game.choices import (
    are_near_duplicates,
    distinct_count,
    narrative_before_options,
    trim_to_sentence,
)
from game.grammar import OPTIONS_LEAD, options_grammar, reply_grammar
from game.prompt import METHARME
from game.session import MAX_OPTION_PASSES, Session
from tests.factories import make_scenario

GOOD = "The gate creaks.\n\n- Open it.\n- Climb over.\n- Leave."


def script(*replies: str) -> ScriptedBackend:
    return ScriptedBackend(replies=replies)


def test_guided_reply_with_its_block_needs_no_option_pass():
    backend = script(GOOD)
    result = Session(make_scenario(), backend, METHARME).play("Start!")
    assert result.choices == ["Open it.", "Climb over.", "Leave."]
    assert result.option_passes == 0
    assert backend.calls[0].grammar == reply_grammar(3)


def test_missing_block_is_written_by_continuing_the_narrative():
    backend = script("The gate creaks. A crow watches.", "- Open it.\n- Climb over.\n- Leave.")
    session = Session(make_scenario(), backend, METHARME)
    result = session.play("Start!")
    assert result.option_passes == 1
    assert result.choices == ["Open it.", "Climb over.", "Leave."]
    assert result.narrative == "The gate creaks. A crow watches."
    option_call = backend.calls[1]
    assert option_call.grammar == options_grammar(3)
    # The option pass continues the same model turn: the prompt ends with the narrative and the
    # blank line, and only those new tokens were evaluated.
    assert backend.detokenize(option_call.prompt).endswith(
        "<|model|>The gate creaks. A crow watches." + OPTIONS_LEAD
    )
    assert option_call.evaluated <= 3
    reply = session.exchanges[-1].reply
    assert reply.text == "The gate creaks. A crow watches.\n\n- Open it.\n- Climb over.\n- Leave."
    # Metharme's markers are text: the reply's tokens end with the next marker's lead.
    assert backend.detokenize(reply.tokens) == "model|>" + reply.text + "<|"


def test_a_partial_block_keeps_its_complete_options():
    backend = script("The gate creaks.\n\n- Open it.\n- Climb", "- Climb over.\n- Leave.")
    rewinds: list[str] = []
    result = Session(make_scenario(), backend, METHARME).play("Start!", on_rewind=rewinds.append)
    assert result.choices == ["Open it.", "Climb over.", "Leave."]
    # "- Climb" was cut off mid-line, so it is written again; "- Open it." stays.
    assert rewinds[0] == "The gate creaks.\n\n- Open it.\n"
    assert backend.calls[1].grammar == options_grammar(2)
    assert rewinds[-1] == GOOD


def test_duplicate_options_are_written_again_keeping_the_distinct_ones():
    dupes = "- Open the gate.\n- open the gate!\n- Leave."
    backend = script("The gate creaks.\n\n" + dupes, "- Climb over.\n- Leave.")
    result = Session(make_scenario(), backend, METHARME).play("Start!")
    assert result.option_passes == 1
    assert result.choices == ["Open the gate.", "Climb over.", "Leave."]
    # The distinct first option stayed; the model wrote only the two after it, a little hotter.
    call = backend.calls[1]
    assert backend.detokenize(call.prompt).endswith("The gate creaks.\n\n- Open the gate.\n")
    assert call.grammar == options_grammar(2)


def test_option_passes_are_bounded_and_keep_the_best_attempt():
    two_distinct = "- Open the gate.\n- Open the gate.\n- Leave."
    backend = script("The gate creaks.", *[two_distinct] * 10)
    result = Session(make_scenario(), backend, METHARME).play("Start!")
    assert result.option_passes == MAX_OPTION_PASSES
    assert len(backend.calls) == 1 + MAX_OPTION_PASSES
    assert distinct_count(result.choices) == 2


def test_narrative_cut_by_the_budget_is_trimmed_to_a_sentence():
    backend = script(
        "A long first sentence runs here. " + "word " * 30, "- Open it.\n- Climb over.\n- Leave."
    )
    session = Session(make_scenario(sampling={"max_tokens": 40}), backend, METHARME)
    # Of 40 tokens, 20 are kept for the options and 4 for the lead: the narrative gets 16 and
    # runs out two words into its second sentence.
    result = session.play("Start!")
    assert result.narrative == "A long first sentence runs here."
    assert result.choices == ["Open it.", "Climb over.", "Leave."]


def test_free_mode_asks_once_with_a_bullet_lead_and_no_grammar():
    backend = script("The gate creaks.", "Open it.\n- Climb over.\n- Leave.")
    result = Session(make_scenario(choice_mode="free"), backend, METHARME).play("Start!")
    assert [call.grammar for call in backend.calls] == [None, None]
    assert backend.detokenize(backend.calls[1].prompt).endswith("The gate creaks.\n\n- ")
    assert result.choices == ["Open it.", "Climb over.", "Leave."]


def test_free_mode_keeps_any_options_it_got():
    backend = script("The gate creaks.\n\n- Open it.\n- Leave.")
    result = Session(make_scenario(choice_mode="free"), backend, METHARME).play("Start!")
    assert result.choices == ["Open it.", "Leave."]
    assert result.option_passes == 0


def test_free_mode_asks_only_once():
    backend = script("The gate creaks.", "Nothing.", "- Never asked.\n- x\n- y")
    result = Session(make_scenario(choice_mode="free"), backend, METHARME).play("Start!")
    assert result.option_passes == 1 and result.choices == []
    assert len(backend.calls) == 2


def test_a_stopped_reply_gets_no_option_pass():
    backend = script("one two three four five six")
    result = Session(make_scenario(), backend, METHARME).play("Start!", should_stop=lambda: True)
    assert result.cut_short and result.option_passes == 0 and len(backend.calls) == 1


def test_backend_without_grammars_falls_back_to_free():
    backend = ScriptedBackend(replies=(GOOD,), supports_grammar=False)
    session = Session(make_scenario(), backend, METHARME)
    assert session.choice_mode == "free"
    session.play("Start!")
    assert backend.calls[0].grammar is None


def test_choice_mode_precedence():
    backend = script(GOOD)
    assert Session(make_scenario(choice_mode="free"), backend, METHARME).choice_mode == "free"
    assert (
        Session(
            make_scenario(choice_mode="free"), backend, METHARME, choice_mode="guided"
        ).choice_mode
        == "guided"
    )
    assert Session(make_scenario(), backend, METHARME).choice_mode == "guided"


def test_option_count_from_the_scenario():
    backend = script("Go.\n\n- Left.\n- Right.")
    result = Session(make_scenario(choices=2), backend, METHARME).play("Start!")
    assert result.choices == ["Left.", "Right."] and result.option_passes == 0
    assert backend.calls[0].grammar == reply_grammar(2)


def test_near_duplicates():
    assert are_near_duplicates("Open the door.", "open the door!")
    assert are_near_duplicates("Open the door", "Open the doors")
    assert not are_near_duplicates("Open the door.", "Close the door.")
    assert not are_near_duplicates("Run.", "Hide.")
    assert distinct_count(["Go.", "go", "Stay."]) == 2


def test_narrative_before_options_and_trim():
    assert narrative_before_options("Story.\n\n- a\n- b") == "Story."
    assert narrative_before_options("Story only.\n") == "Story only."
    assert (
        trim_to_sentence("It rains hard on the roof tonight. The wind")
        == "It rains hard on the roof tonight."
    )
    assert (
        trim_to_sentence('"Stop!" he cries, raising a hand. You run')
        == '"Stop!" he cries, raising a hand.'
    )
    assert trim_to_sentence(
        "All of it is one sentence. then a long unfinished clause that goes on"
    ) == (
        "All of it is one sentence. then a long unfinished clause that goes on"
    )  # cutting would drop more than half
    assert trim_to_sentence("No end at all") == "No end at all"
