"""The reply grammar, checked by llama.cpp's own grammar engine, and guided replies on the real model."""

from __future__ import annotations

import ctypes
import math

import llama_cpp
import pytest

from game.backends.llamacpp import LlamaCppBackend
from game.choices import distinct_count, parse_reply
from game.config import embedded_model_path
from game.grammar import options_grammar, reply_grammar
from game.session import Session
from game.transcript import closing_tokens, open_model_tokens
from tests.factories import make_scenario

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model() -> LlamaCppBackend:
    return LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=1)


def _allowed(sampler: ctypes.c_void_p, token: int) -> bool:
    data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
    candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
    return not math.isinf(data[0].logit)


def accepts(model: LlamaCppBackend, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write exactly ``text`` and then end."""
    sampler = llama_cpp.llama_sampler_init_grammar(model._vocab, grammar.encode(), b"root")
    assert sampler, "the grammar does not parse"
    try:
        for token in model.tokenize(text, special=False):
            if not _allowed(sampler, token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return _allowed(sampler, model._llm.token_eos())
    finally:
        llama_cpp.llama_sampler_free(sampler)


OPTIONS = "\n\n- Open the door.\n- Knock twice.\n- Walk away."
GOOD = [
    "You stand at the gate." + OPTIONS,
    ' "Who goes there?" the guard asks, lowering his spear. “Speak!”' + OPTIONS,
    "The hall is dark.\n\nA second paragraph: dust, cobwebs; a clock (stopped) at 3:15!\nAnd a third line."
    + OPTIONS,
    "Der Wind heult über die Heide. Œuvre, naïve café — 東京の夜は静かだ。 🙂" + OPTIONS,
    "—Quiet, she whispers.\n3 men enter. 1984 was a long year, and 12:15 is late." + OPTIONS,
]
BAD = [
    "You stand at the gate.",  # no options
    "You stand at the gate.\n\n- Open the door.\n- Knock twice.",  # two, not three
    "You stand at the gate." + OPTIONS + "\n- Sing.",  # four
    "You stand at the gate.\n- Open the door.\n- Knock twice.\n- Walk away.",  # no blank line
    "You stand at the gate." + OPTIONS + "\n\nWhat now?",  # text after the block
    "- Open the door.\n- Knock twice.\n- Walk away.",  # no narrative
    "You stand at the gate.\n- a list inside the story\n\nMore."
    + OPTIONS,  # list line in narrative
    "You stand at the gate.\n1. a numbered list\n2) inside it" + OPTIONS,  # numbered list
    "You stand at the gate.\n\n- "
    + "x" * 120
    + "\n- Knock twice.\n- Walk away.",  # option too long
    "You stand at the gate.\n\n-  Open\n- Knock twice.\n- Walk away.",  # option starting blank
]


@pytest.mark.parametrize("text", GOOD)
def test_reply_grammar_accepts_ordinary_prose(model, text):
    assert accepts(model, reply_grammar(3), text)


@pytest.mark.parametrize("text", BAD)
def test_reply_grammar_rejects_replies_without_the_block(model, text):
    assert not accepts(model, reply_grammar(3), text)


def test_option_count_follows_the_scenario(model):
    assert accepts(model, reply_grammar(2), "Go.\n\n- Left.\n- Right.")
    assert not accepts(model, reply_grammar(2), "Go." + OPTIONS)
    assert accepts(model, options_grammar(3), OPTIONS.lstrip())
    assert not accepts(model, options_grammar(3), "- Left.\n- Right.")


@pytest.fixture(scope="module")
def each_model(real_model) -> tuple[LlamaCppBackend, object]:
    backend = LlamaCppBackend(real_model.path, n_ctx=1024, seed=1)
    yield backend, real_model.fmt
    backend.close()


@pytest.mark.parametrize("scenario_id", ["haunted", "space", "noir"])
def test_guided_replies_on_the_real_models_end_with_distinct_options(each_model, scenario_id):
    model, fmt = each_model
    scenario = make_scenario(
        id=scenario_id, setting=f"A {scenario_id} story.", sampling={"max_tokens": 200}
    )
    session = Session(scenario, model, fmt, seed=13)
    for action in ("Start!", "I look around carefully.", "1"):
        from game.choices import resolve_action

        result = session.play(resolve_action(action, session.choices))
        assert len(result.choices) == 3, session.exchanges[-1].reply.text
        assert distinct_count(result.choices) == 3
        assert parse_reply(session.exchanges[-1].reply.text).choices == result.choices
        # The reply as kept, with its opening and closing markers' tokens.
        markers = len(open_model_tokens(model, fmt)) + len(closing_tokens(model, fmt)) + 1
        assert len(session.exchanges[-1].reply) <= 200 + markers
