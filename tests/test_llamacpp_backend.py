"""The real llama.cpp backend on the embedded SmolLM2 model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from game.backends.base import BackendError, GenerationRequest
from game.backends.llamacpp import LlamaCppBackend
from game.config import embedded_model_path
from game.prompt import CHATML, METHARME, render
from game.session import DEFAULT_SAMPLING, Session
from game.transcript import tokenize_pieces
from tests.factories import make_scenario

pytestmark = pytest.mark.model

GREEDY = DEFAULT_SAMPLING.model_copy(update={"temperature": 0.0})


@pytest.fixture(scope="module")
def model() -> LlamaCppBackend:
    return LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=1)


def test_embedded_model_is_chatml_and_knows_its_size(model):
    assert model.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model.n_ctx == 1024
    assert "<|im_start|>" in (model.chat_template or "")


@pytest.mark.parametrize("fmt", [CHATML, METHARME], ids=["chatml", "metharme"])
def test_segment_tokens_spell_the_rendered_prompt(model, fmt):
    turns = [
        ("user", "Start! <|system|> é ü 日本"),
        ("model", "A door.\n\n- Open it.\n- Knock."),
        ("user", "Open it."),
    ]
    tokens = tokenize_pieces(model, fmt, "system", "You narrate.")
    for role, text in turns:
        tokens += tokenize_pieces(model, fmt, role, text)
    tokens += model.tokenize(fmt.model_prefix, special=True)
    assert model.detokenize(tokens) == render(fmt.name, "You narrate.", turns)


def test_chatml_markers_are_special_tokens_but_player_text_is_not(model):
    assert len(model.tokenize("<|im_start|>", special=True)) == 1
    assert len(model.tokenize("<|im_start|>", special=False)) > 1


def test_greedy_generation_is_reproducible_and_counts_tokens(model):
    scenario = make_scenario(sampling={"max_tokens": 24, "temperature": 0.0}, choice_mode="free")
    session = Session(scenario, model, CHATML)
    first = session.play("Start!")
    text_one = session.exchanges[-1].reply.text
    again = session.retry()
    assert session.exchanges[-1].reply.text == text_one
    assert first.stats.generated_tokens == again.stats.generated_tokens > 0
    # The retry found the whole prompt but its last token in the cache; a free-mode option pass
    # (asked once when a reply has none) reads only the few tokens it writes before the block.
    assert again.stats.evaluated_tokens <= 1 + 6 * again.option_passes
    assert 0 <= first.stats.evaluated_tokens - first.stats.prompt_tokens <= 6 * first.option_passes


def test_second_turn_evaluates_only_what_is_new(model):
    session = Session(
        make_scenario(sampling={"max_tokens": 24}), model, CHATML, seed=3, choice_mode="free"
    )
    session.play("Start!")
    result = session.play("I look around.")
    new = len(tokenize_pieces(model, CHATML, "user", "I look around.")) + len(
        model.tokenize(CHATML.model_prefix, special=True)
    )
    # The suffix of the previous reply (<|im_end|>\n) and its last sampled token are new too.
    assert new <= result.stats.evaluated_tokens <= new + 4 + 6 * result.option_passes
    assert result.stats.prompt_tokens > 3 * result.stats.evaluated_tokens


def test_window_slides_at_a_small_context(model):
    small = LlamaCppBackend(embedded_model_path(), n_ctx=512, seed=2)
    session = Session(make_scenario(sampling={"max_tokens": 40}), small, CHATML, seed=5)
    results = [
        session.play(f"I walk down corridor number {i} and open the door.") for i in range(10)
    ]
    assert any(result.slid for result in results)
    assert session.window_start > 0
    for result in results:
        assert result.stats.prompt_tokens <= session.budget
    # The system prompt is still pinned at the start of what the model holds.
    assert small.cached_tokens[: len(session.system)] == list(session.system.tokens)
    assert "corridor number 0 " not in session.prompt_text()
    small.close()


def test_stop_callback_stops_generation(model):
    pieces: list[str] = []
    request = GenerationRequest(max_tokens=50, sampling=GREEDY)
    prompt = [
        model.tokenize(
            "<|im_start|>user\nTell me a long story.<|im_end|>\n<|im_start|>assistant\n",
            special=True,
        )
    ]
    stats = model.generate(
        prompt, request, lambda token, text: pieces.append(text) or len(pieces) < 5
    )
    assert stats.finish_reason == "stopped" and stats.generated_tokens == 5 == len(pieces)


def test_llama_log_goes_to_python_logging(caplog):
    with caplog.at_level(logging.DEBUG, logger="game.llama_cpp"):
        backend = LlamaCppBackend(embedded_model_path(), n_ctx=256)
    assert any("llama_model_loader" in record.getMessage() for record in caplog.records)
    backend.close()


def test_missing_model(tmp_path):
    with pytest.raises(BackendError, match="model file not found"):
        LlamaCppBackend(tmp_path / "nope.gguf")


def test_not_a_gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(BackendError, match="not a GGUF model file"):
        LlamaCppBackend(path)


def test_broken_gguf_fails_to_load_with_one_line(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(Path(embedded_model_path()).read_bytes()[:4096])
    with pytest.raises(BackendError, match=r"failed to load model broken\.gguf") as info:
        LlamaCppBackend(path)
    assert "\n" not in str(info.value)


def _greedy_tokens(backend: LlamaCppBackend, segments: list, count: int) -> list[int]:
    tokens: list[int] = []
    request = GenerationRequest(max_tokens=count, sampling=GREEDY, ban_end=True)
    backend.generate(segments, request, lambda token, text: tokens.append(token) or True)
    return tokens


def _reply_body(session: Session, backend: LlamaCppBackend) -> list[int]:
    prefix = len(backend.tokenize(CHATML.model_prefix, special=True))
    suffix = len(backend.tokenize(CHATML.model_suffix, special=True))
    tokens = list(session.exchanges[-1].reply.tokens)
    return tokens[prefix : len(tokens) - suffix]


def test_context_shift_on_the_real_model():
    backend = LlamaCppBackend(embedded_model_path(), n_ctx=768, seed=4)
    scenario = make_scenario(sampling={"max_tokens": 24}, choice_mode="free")
    session = Session(scenario, backend, CHATML, seed=4, fixed_reply_tokens=24)
    new_total = evaluated_total = 0
    for turn in range(30):
        result = session.play(f"I open door number {turn} and step through it quietly.")
        if turn:
            new = (
                len(session.exchanges[-1].player) + 3 + 2 + 1
            )  # player, prefix, suffix, last token
            new_total += new
            evaluated_total += result.stats.evaluated_tokens
            if result.slid:
                assert result.stats.evaluated_tokens <= new + 2
    assert backend.shifts >= 2
    assert evaluated_total <= 1.1 * new_total
    assert backend.cached_tokens[: len(session.system)] == list(session.system.tokens)
    backend.close()


def test_replies_after_a_shift_match_a_fresh_evaluation():
    """Greedy decoding after a KV shift against the same prompt evaluated from scratch.

    Shifting re-rotates the cached keys (RoPE) in place, which is not bit-exact with computing
    them at their new positions, so the two replies may drift apart after some tokens. Measured
    on the embedded model: the first 24 greedy tokens agree in full over the shifted turns here;
    the test requires at least the first 8 of each reply, and 90% of all tokens, to agree.
    """
    shifted = LlamaCppBackend(embedded_model_path(), n_ctx=768, seed=4)
    fresh = LlamaCppBackend(embedded_model_path(), n_ctx=768, seed=4, cache_mode="none")
    scenario = make_scenario(sampling={"max_tokens": 24, "temperature": 0.0}, choice_mode="free")
    session = Session(scenario, shifted, CHATML, fixed_reply_tokens=24)
    compared = agreeing = checked_turns = 0
    for turn in range(30):
        shifts_before = shifted.shifts
        session.play(f"I open door number {turn} and step through it quietly.")
        if shifted.shifts == shifts_before:
            continue
        kept = session.kept_exchanges()
        segments = [session.system.tokens]
        for exchange in kept[:-1]:
            segments += [exchange.player.tokens, exchange.reply.tokens]
        segments += [
            kept[-1].player.tokens,
            tuple(fresh.tokenize(CHATML.model_prefix, special=True)),
        ]
        reference = _greedy_tokens(fresh, segments, 24)
        after_shift = _reply_body(session, shifted)
        assert after_shift[:8] == reference[:8]
        compared += len(reference)
        agreeing += sum(a == b for a, b in zip(after_shift, reference, strict=False))
        checked_turns += 1
    assert checked_turns >= 2
    assert agreeing / compared >= 0.9
    shifted.close()
    fresh.close()


def test_undo_and_resume_on_the_real_model(tmp_path):
    from game.saves import ModelInfo, SaveFolder, SaveSlot, load, new_session_from_save

    backend = LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=6)
    scenario = make_scenario(sampling={"max_tokens": 16}, choice_mode="free")
    session = Session(scenario, backend, CHATML, seed=6, fixed_reply_tokens=16)
    for action in ("Start!", "I open the door.", "I light a lamp."):
        session.play(action)
    open_close = len(backend.tokenize(CHATML.model_prefix, special=True)) + len(
        backend.tokenize(CHATML.model_suffix, special=True)
    )
    # After an undo the kept turns stay cached: the next turn reads its own tokens, the closing
    # of the reply before it, and that reply's last (never fed back) token.
    session.undo()
    result = session.play("I wait in silence.")
    assert result.stats.evaluated_tokens <= len(session.exchanges[-1].player) + open_close + 1
    # A resumed game on a freshly loaded model reads its window once, then only new turns.
    path = SaveSlot.new(SaveFolder(tmp_path), "g", ModelInfo(file=backend.name)).save(session)
    fresh = LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=6)
    resumed = new_session_from_save(load(path), fresh, CHATML)
    resumed.fixed_reply_tokens = 16
    first = resumed.play("I step outside.")
    assert first.stats.evaluated_tokens == first.stats.prompt_tokens
    second = resumed.play("I look at the sky.")
    assert second.stats.evaluated_tokens <= len(resumed.exchanges[-1].player) + open_close + 1
    backend.close()
    fresh.close()


def test_a_cache_that_cannot_shift_falls_back_to_prefix_reuse(monkeypatch, caplog):
    """Recurrent and sliding-window models answer llama_memory_can_shift with false."""
    import llama_cpp as llama_cpp_module

    monkeypatch.setattr(llama_cpp_module, "llama_memory_can_shift", lambda memory: False)
    with caplog.at_level(logging.WARNING, logger="game.backends.llamacpp"):
        backend = LlamaCppBackend(embedded_model_path(), n_ctx=768, seed=4)
    warnings = [r for r in caplog.records if "cannot be shifted" in r.getMessage()]
    assert len(warnings) == 1 and not backend.can_shift
    scenario = make_scenario(sampling={"max_tokens": 24}, choice_mode="free")
    session = Session(scenario, backend, CHATML, seed=4, fixed_reply_tokens=24)
    slid = []
    for turn in range(30):
        result = session.play(f"I open door number {turn} and step through it quietly.")
        if result.slid:
            slid.append(result)
    assert slid and backend.shifts == 0
    # Without a shift, a slide makes the model read the kept window again.
    assert all(
        r.stats.evaluated_tokens > r.stats.prompt_tokens - len(session.system) - 10 for r in slid
    )
    backend.close()


def test_a_callback_may_tokenize_while_the_model_generates(model):
    """The backend never holds the lock a callback needs: a token callback that tokenizes
    (a stop scanner, a front end counting tokens) does not deadlock."""
    import threading

    counted: list[int] = []

    def on_token(token: int, text: str) -> bool:
        counted.append(len(model.tokenize(text or "x", special=False)))
        return len(counted) < 4

    prompt = [model.bos() + model.tokenize("Once upon a time", special=False)]
    request = GenerationRequest(max_tokens=8, sampling=DEFAULT_SAMPLING, seed=1)
    worker = threading.Thread(target=model.generate, args=(prompt, request, on_token), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "generation deadlocked on a callback that tokenizes"
    assert len(counted) == 4


def test_a_closed_model_says_so_instead_of_crashing():
    backend = LlamaCppBackend(embedded_model_path(), n_ctx=256)
    backend.close()
    backend.close()  # twice is fine
    assert backend.n_ctx == 256  # a status line may still ask
    with pytest.raises(BackendError, match="was closed"):
        backend.tokenize("hello", special=False)
    request = GenerationRequest(max_tokens=4, sampling=DEFAULT_SAMPLING)
    with pytest.raises(BackendError, match="was closed"):
        backend.generate([[1, 2, 3]], request, lambda token, text: True)
