"""Metharme on LLaMA's SentencePiece vocabulary: the prompt's tokens are exactly llama.cpp's
tokenization of the rendered prompt text, seams included, outside the model's own reply spans.

llama.cpp's tokenization of the text is what every front end that sends prompt text gives the
model (KoboldCpp, SillyTavern, llama-server): BOS, then the text with SentencePiece's leading
space, markers as plain text. Runs on the tiny random-weight LLaMA model (tests/tiny_llama.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.backends.llamacpp import LlamaCppBackend
from game.prompt import METHARME, neutralize
from game.session import Session
from game.transcript import make_segment, open_model_tokens, reply_segment, tokenize_pieces
from tests.factories import make_scenario

pytestmark = pytest.mark.model

CARD = Path(__file__).parent / "data" / "metharme_card_vectors.txt"


@pytest.fixture(scope="module")
def spm(llama_spm_path: Path) -> LlamaCppBackend:
    backend = LlamaCppBackend(llama_spm_path, n_ctx=288, seed=1)
    yield backend
    backend.close()


def canonical(backend: LlamaCppBackend, text: str) -> list[int]:
    """llama.cpp's own tokenization of a whole prompt: BOS, SentencePiece's leading space,
    markers as text (what llama-server does with a prompt string)."""
    return backend.bos() + backend._raw_tokenize(text, special=False)


Span = tuple[int, int, int]  # (start byte, end byte, token id)


def spans(backend: LlamaCppBackend, tokens: Sequence[int]) -> tuple[list[Span], bytes]:
    out: list[Span] = []
    position = 0
    pieces = []
    for token in tokens:
        piece = backend.piece(token)
        pieces.append(piece)
        out.append((position, position + len(piece), token))
        position += len(piece)
    return out, b"".join(pieces)


def engine_tokens_differ(
    backend: LlamaCppBackend,
    ours: Sequence[int],
    parts: Sequence[tuple[str, str]],
) -> list[str]:
    """Compare the prompt ``ours`` with llama.cpp's tokenization of the text of ``parts``
    (``("engine" | "reply", text)`` in order) over every token not wholly inside a reply.

    A token of either side that ends at a reply's start or crosses it is the model's choice (it
    wrote its first token after ``>`` was read), so it is not compared. Returns the differences.
    """
    text = "".join(text for _, text in parts)
    theirs = canonical(backend, text)
    our_spans, our_bytes = spans(backend, ours)
    their_spans, their_bytes = spans(backend, theirs)
    assert our_bytes == their_bytes, "the prompt's tokens do not spell the rendered text"
    # Reply spans in bytes of the pieces (which start with BOS's text and SentencePiece's space).
    offset = len(backend.piece(ours[0])) + 1 if backend.bos() else 1
    replies = []
    for kind, part in parts:
        size = len(part.encode("utf-8"))
        if kind == "reply":
            replies.append((offset, offset + size))
        offset += size

    def compared(span: Span) -> bool:
        start, end, _ = span
        inside = any(a <= start and end <= b for a, b in replies)
        at_reply_start = any(start < a <= end for a, b in replies)
        return not inside and not at_reply_start

    mine = {span for span in our_spans if compared(span)}
    llama = {span for span in their_spans if compared(span)}
    show = backend.piece
    return [f"engine {s}:{show(s[2])!r}" for s in sorted(mine - llama)] + [
        f"llama.cpp {s}:{show(s[2])!r}" for s in sorted(llama - mine)
    ]


def session_parts(session: Session, action: str | None) -> list[tuple[str, str]]:
    """The rendered prompt of the session's window (and the next action) as engine and reply
    parts, in the order ``render`` writes them."""
    fmt = session.format
    parts = [("engine", fmt.system_prefix + neutralize(session.system_prompt, fmt))]
    for exchange in session.kept_exchanges():
        parts.append(("engine", fmt.user_prefix + neutralize(exchange.player.text, fmt)))
        parts.append(("engine", fmt.model_prefix))
        parts.append(("reply", exchange.reply.text))
    if action is not None:
        parts.append(("engine", fmt.user_prefix + neutralize(action, fmt) + fmt.model_prefix))
    return parts


def session_tokens(session: Session, action: str | None) -> list[int]:
    """The prompt the session sends for ``action`` (no lore in these scenarios)."""
    tokens = list(session.system.tokens)
    for exchange in session.kept_exchanges():
        tokens += exchange.player.tokens + exchange.reply.tokens
    if action is not None:
        tokens += make_segment(session.backend, session.format, "user", action).tokens
        tokens += session._model_open
    return tokens


def test_the_issue_seams_are_merged_as_llama_cpp_merges_them(spm):
    """The two seams the issue measured: the prompt starts ``<s> ▁<`` (1, 529), and
    ``door.<|model|>`` is ``.<`` (19423), not ``.`` ``<``."""
    system = tokenize_pieces(spm, METHARME, "system", "You narrate.", at_start=True)
    player = make_segment(spm, METHARME, "user", "I open the door.").tokens
    prompt = spm.bos() + system + list(player) + open_model_tokens(spm, METHARME)
    assert prompt[:2] == [1, 529]
    assert 19423 in player and 29966 not in prompt
    assert prompt == canonical(spm, "<|system|>You narrate.<|user|>I open the door.<|model|>")


@pytest.mark.parametrize("generated", [False, True], ids=["from-text", "as-generated"])
def test_the_model_cards_examples_tokenize_as_llama_cpp_tokenizes_them(spm, generated):
    """The card's two prompts, built segment by segment through the engine, are token for
    token llama.cpp's tokenization of the card's text (the reply as read from a save, and as a
    model that wrote the canonical tokens would have generated it)."""
    vectors = [
        line.replace("\\n", "\n")
        for line in CARD.read_text("utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert len(vectors) == 2
    system = vectors[0].removeprefix("<|system|>").split("<|user|>")[0]
    base = spm.bos() + tokenize_pieces(spm, METHARME, "system", system, at_start=True)
    base += make_segment(spm, METHARME, "user", "Start!").tokens
    assert base + open_model_tokens(spm, METHARME) == canonical(spm, vectors[0])

    reply = vectors[1].split("<|model|>")[1].split("<|user|>")[0]
    body = spm.tokenize(reply, special=False) if generated else None
    second = base + list(reply_segment(spm, METHARME, reply, body).tokens)
    second += make_segment(spm, METHARME, "user", "go inside").tokens
    second += open_model_tokens(spm, METHARME)
    assert second == canonical(spm, vectors[1])


ACTION_TEXT = st.lists(
    st.sampled_from(
        [*"abcXYZ 019.,!?;:'\"()<>|-*\n\t", "é", "ü", "日本", "—", "…", "🙂", "ß", "  ", " door"]
    ),
    min_size=1,
    max_size=20,
).map("".join)
ENDING = st.sampled_from(["", ".", "!", "?", '"', "'", "...", " ", "\n", "5", ".)", "<", "|"])


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    actions=st.lists(st.tuples(ACTION_TEXT, ENDING), min_size=6, max_size=7),
    seed=st.integers(0, 10_000),
)
def test_random_actions_tokenize_as_the_rendered_prompt(spm, actions, seed):
    """Random actions over several turns, windows that slide: outside the reply spans, the
    prompt's tokens are llama.cpp's tokenization of the rendered prompt, at every turn."""
    scenario = make_scenario(sampling={"max_tokens": 40}, choice_mode="guided")
    session = Session(scenario, spm, METHARME, seed=seed, headroom=40)
    slid = False
    for text, ending in actions:
        action = (text + ending).strip() or "wait"
        result = session.play(action)
        slid |= result.slid
        probe = "I look" + ending
        assert not engine_tokens_differ(
            spm, session_tokens(session, probe), session_parts(session, probe)
        )
    # A system prompt of about 130 tokens and a budget of 248: the window slides by turn 6.
    assert slid and session.window_start > 0
    assert session.prompt_text("x") == "".join(t for _, t in session_parts(session, "x"))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reply=ACTION_TEXT, ending=ENDING, chunks=st.lists(st.integers(1, 5), max_size=40))
def test_a_reply_meets_the_next_marker_as_the_text_does(spm, reply, ending, chunks):
    """Whatever the model's reply ends with, and however it split the reply into tokens (a
    model need not write the tokenizer's own split), the marker after it is tokenized as the
    whole text is: the seam is tokenized again where the reply and the marker merge.

    (The reply starts with a word: a reply of one word glued to the ``>`` before it, such as
    ``.``, would merge with that ``>`` in a re-tokenization; its first token is the model's.)"""
    text = "The" + reply + ending
    body: list[int] = []
    position = 0
    for size in [*chunks, len(text)]:
        body += spm.tokenize(text[position : position + size], special=False)
        position += size
    system = "You narrate."
    prompt = spm.bos() + tokenize_pieces(spm, METHARME, "system", system, at_start=True)
    prompt += make_segment(spm, METHARME, "user", "Start!").tokens
    prompt += reply_segment(spm, METHARME, text, body).tokens
    prompt += make_segment(spm, METHARME, "user", "I wait.").tokens
    prompt += open_model_tokens(spm, METHARME)
    parts = [
        ("engine", f"<|system|>{system}<|user|>Start!<|model|>"),
        ("reply", text),
        ("engine", "<|user|>I wait.<|model|>"),
    ]
    assert not engine_tokens_differ(spm, prompt, parts)


def test_a_literal_end_of_sequence_in_text_ends_the_reply_and_never_shows(spm):
    """Some GGUF conversions write "</s>" as text: it stops the reply like the EOS token."""
    from game.streaming import StopScanner

    scanner = StopScanner(METHARME.stop)
    shown = scanner.feed("The door opens.</") + scanner.feed("s> and more")
    assert scanner.stopped and scanner.text == "The door opens."
    assert "</s>" not in shown + scanner.flush()


def test_a_llama_vocabulary_without_a_template_plays_metharme_and_says_why(spm):
    from game.config import Settings
    from game.runtime import choose_format, format_status

    assert spm.chat_template is None and spm.vocabulary == "llama"
    fmt = choose_format(Settings(), spm)
    assert fmt is METHARME
    assert format_status(fmt, spm) == "metharme (no chat template, LLaMA vocabulary)"
