"""The remote backend against a real llama-server on the embedded model: the same game on the
local and the server backend, the server's prompt cache over a sliding session, guided choices,
the OpenAI dialect on the same server's ``/v1/completions``."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from game.backends.base import BackendError, GenerationCancelled, GenerationRequest
from game.backends.llamacpp import LlamaCppBackend
from game.backends.remote import RemoteBackend
from game.bench import context
from game.config import embedded_model_path
from game.prompt import CHATML, format_for_chat_template
from game.scenario import load_scenario
from game.session import DEFAULT_SAMPLING, Session
from tests.factories import BUILTIN_SCENARIO

pytestmark = pytest.mark.model

# No repetition penalty: llama-server counts the prompt's last tokens in it, the local backend
# only the reply's (see the README), so with a penalty the two may pick different words.
GREEDY = DEFAULT_SAMPLING.model_copy(
    update={"temperature": 0.0, "max_tokens": 120, "repeat_penalty": 1.0}
)
ACTIONS = ("I open the front door.", "I light a candle.")


@pytest.fixture(scope="module")
def local() -> LlamaCppBackend:
    backend = LlamaCppBackend(embedded_model_path(), n_ctx=1024, seed=1)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def remote(llama_server) -> RemoteBackend:
    return RemoteBackend(llama_server.url, slot=0, seed=1)


def _play(backend, actions=ACTIONS, *, choice_mode="guided") -> list[tuple[str, list[str], tuple]]:
    session = Session(
        load_scenario(BUILTIN_SCENARIO), backend, CHATML, sampling=GREEDY, choice_mode=choice_mode
    )
    turns = []
    for action in actions:
        result = session.play(action)
        turns.append((result.narrative, result.choices, session.exchanges[-1].reply.tokens))
    return turns


def test_the_server_says_what_it_serves(remote, llama_server):
    assert remote.dialect_name == "llama-server"
    assert remote.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert remote.n_ctx == 1024  # the slot's share of --ctx-size
    assert format_for_chat_template(remote.chat_template) == "chatml"
    assert remote.bos() == []  # SmolLM2 wants no BOS
    assert remote.url == llama_server.url


def test_server_tokens_are_the_local_tokens(local, remote):
    for text, special in (
        ("<|im_start|>user\nHello<|im_end|>\n", True),
        ("A player types <|im_start|>system as plain text.", False),
        ("  spaces, émojis 🎲 and\nnewlines ", False),
    ):
        assert remote.tokenize(text, special=special) == local.tokenize(text, special=special)
    tokens = local.tokenize("The door creaks <|im_end|>", special=True)
    assert remote.detokenize(tokens) == local.detokenize(tokens)


def test_a_greedy_game_agrees_with_local_play(local, remote):
    """The same guided turns, greedy: the same replies, choices and reply token ids."""
    on_local = _play(local)
    on_server = _play(remote)
    assert on_server == on_local
    for _narrative, choices, _tokens in on_server:
        assert len(choices) == 3  # guided choices, every turn, through the server's grammar


def test_the_second_turn_reads_only_what_is_new(remote):
    session = Session(load_scenario(BUILTIN_SCENARIO), remote, CHATML, sampling=GREEDY)
    session.play("I wait in the rain.")
    second = session.play("I wait a little longer.")
    # The server's own count (timings.prompt_n, summed over the reply's passes): the new player
    # segment and a few seams, not the history.
    assert remote.last_timings["prompt_n"] <= second.stats.evaluated_tokens
    assert second.stats.evaluated_tokens < second.stats.prompt_tokens / 4


def test_a_40_turn_sliding_session_rereads_nothing_on_the_server(llama_server, capsys):
    """The context bench's session, 40 turns at a 512-token window, on the server with its KV
    reuse by shifting: evaluated prompt tokens per new token at most 1.1 (timings.prompt_n)."""

    def opener(cache_mode):
        return RemoteBackend(llama_server.url, slot=1, cache_mode=cache_mode, seed=1, n_ctx=512)

    strategy = context.STRATEGIES[2]
    assert strategy.cache_mode == "shift"
    costs, wall, shifts = context.play(
        embedded_model_path(),
        load_scenario(BUILTIN_SCENARIO),
        CHATML,
        strategy,
        turns=40,
        n_ctx=512,
        reply_tokens=16,
        seed=1,
        n_gpu_layers=None,
        n_threads=None,
        opener=opener,
    )
    evaluated = sum(cost.evaluated_tokens for cost in costs)
    new = sum(cost.new_tokens for cost in costs)
    slides = sum(cost.slid for cost in costs)
    with capsys.disabled():
        print(
            f"\nserver 40-turn session: timings.prompt_n total {evaluated}, new {new}, "
            f"ratio {evaluated / new:.3f}, slides {slides}, shifts seen {shifts}, wall {wall:.1f}s"
        )
    assert slides >= 2  # the window did slide
    assert shifts >= 1  # and the server reused the kept turns by shifting them
    assert evaluated / new <= 1.1


def test_the_openai_dialect_on_v1_completions(llama_server, remote):
    """The OpenAI-compatible dialect, tried on the same server's /v1/completions: the same
    tokens, greedy replies and guided choices as the native dialect."""
    openai = RemoteBackend(llama_server.url, dialect="openai", seed=1)
    assert openai.dialect_name == "openai"
    assert openai.slot is None
    assert openai.name == remote.name
    assert openai.n_ctx > 0
    text = "<|im_start|>user\nHi<|im_end|>\n"
    assert openai.tokenize(text, special=True) == remote.tokenize(text, special=True)
    # Greedy replies agree from the same start: earlier tests left slots holding caches that
    # llama-server may reuse in shifted chunks (an approximation, see the README).
    _erase_slots(remote, llama_server.url)
    on_openai = _play(openai)
    _erase_slots(remote, llama_server.url)
    assert on_openai[0] == _play(remote, ACTIONS[:1])[0]
    for _narrative, choices, _tokens in on_openai:
        assert len(choices) == 3  # the grammar went through /v1/completions


def test_cancelling_while_the_server_reads_the_prompt(remote):
    prompt = remote.tokenize("Tell me a long story about a haunted house. " * 30, special=False)
    request = GenerationRequest(max_tokens=8, sampling=GREEDY)
    heard = []

    def on_progress(read: int, total: int) -> bool:
        heard.append((read, total))
        return False

    with pytest.raises(GenerationCancelled):
        remote.generate([prompt], request, lambda token, text: True, on_progress)
    assert heard and heard[0][1] > 0
    # The slot is free again (once the server has noticed): the next reply works.
    request = GenerationRequest(max_tokens=4, sampling=GREEDY, ban_end=True)
    stats = remote.generate([prompt[:20]], request, lambda token, text: True)
    assert stats.generated_tokens > 0


def test_stopping_a_reply_stops_it_on_the_server(remote):
    prompt = remote.tokenize("<|im_start|>user\nCount to fifty.<|im_end|>\n", special=True)
    got = []
    stats = remote.generate(
        [prompt],
        GenerationRequest(max_tokens=64, sampling=GREEDY),
        lambda token, text: got.append(token) or len(got) < 3,
    )
    assert stats.finish_reason == "stopped"
    assert len(got) == 3
    # The server drops the request when it next writes to the closed connection.
    deadline = time.monotonic() + 60
    while remote._slot_busy() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not remote._slot_busy()


def _erase_slots(backend: RemoteBackend, url: str) -> None:
    """Empty every slot's cache (llama-server's ``/slots/ID?action=erase``)."""
    _wait_idle(backend)
    for slot in backend.slots() or []:
        request = urllib.request.Request(
            f"{url}/slots/{slot['id']}?action=erase", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def _wait_idle(backend: RemoteBackend) -> None:
    """Wait until the server has dropped replies that earlier tests stopped."""
    deadline = time.monotonic() + 60
    while any(slot.get("is_processing") for slot in backend.slots() or []):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_two_games_on_two_slots_at_once_do_not_mix(llama_server, remote):
    """Two games, each pinned to its own slot, played at the same time: each gets the reply it
    gets when played alone."""
    _wait_idle(remote)
    alone_a = _play(remote, ACTIONS[:1], choice_mode="free")
    other = RemoteBackend(llama_server.url, slot=1, seed=1)
    alone_b = _play(other, ACTIONS[1:2], choice_mode="free")
    results: dict[str, object] = {}

    def game(key, backend, actions):
        results[key] = _play(backend, actions, choice_mode="free")

    threads = [
        threading.Thread(
            target=game, args=("a", RemoteBackend(llama_server.url, slot=0), ACTIONS[:1])
        ),
        threading.Thread(
            target=game, args=("b", RemoteBackend(llama_server.url, slot=1), ACTIONS[1:2])
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert results == {"a": alone_a, "b": alone_b}


def test_a_slot_another_game_is_using_gives_one_line(llama_server):
    holder = RemoteBackend(llama_server.url, slot=0)
    _wait_idle(holder)
    prompt = holder.tokenize("<|im_start|>user\nWrite a long poem.<|im_end|>\n", special=True)
    started = threading.Event()
    release = threading.Event()

    def long_reply():
        def on_token(token, text):
            started.set()
            return not release.wait(0.05)

        holder.generate(
            [prompt], GenerationRequest(max_tokens=400, sampling=GREEDY, ban_end=True), on_token
        )

    thread = threading.Thread(target=long_reply)
    thread.start()
    try:
        assert started.wait(60)
        intruder = RemoteBackend(llama_server.url, slot=0)
        with pytest.raises(BackendError) as failure:
            intruder.generate(
                [prompt], GenerationRequest(max_tokens=4, sampling=GREEDY), lambda t, s: True
            )
        message = str(failure.value)
        assert "slot 0" in message and "busy with another game" in message
        assert "\n" not in message
        # A game that lets the server choose gets the other, idle slot.
        assert RemoteBackend(llama_server.url).slot == 1
    finally:
        release.set()
        thread.join(timeout=120)
        # The server drops the stopped reply at its next token: leave slot 0 idle for the
        # tests after this one.
        _wait_idle(holder)


def test_a_slot_the_server_does_not_have(llama_server):
    with pytest.raises(BackendError, match="has 2 slot"):
        RemoteBackend(llama_server.url, slot=7)


def test_slot_save_and_restore(remote):
    session = Session(load_scenario(BUILTIN_SCENARIO), remote, CHATML, sampling=GREEDY)
    session.play("I wait in the rain.")
    assert remote.save_slot("game-test.bin")
    # Another game takes the slot; restoring brings this game's cache back.
    remote.generate(
        [remote.tokenize("Something else entirely.", special=False)],
        GenerationRequest(max_tokens=2, sampling=GREEDY, ban_end=True),
        lambda t, s: True,
    )
    assert remote.restore_slot("game-test.bin")
    result = session.play("I wait a little longer.")
    assert result.stats.evaluated_tokens < result.stats.prompt_tokens / 4
