"""The story so far on a real llama-server (the embedded model, two slots): nothing is edited
in place there, so the summary is written on another idle slot (the game's keeps its cache),
the player is told once, and the turn after a summary reads the prompt after its common
prefix again; with no other slot free, the summary takes the game's own slot and the next
turn reads the whole prompt again."""

from __future__ import annotations

import pytest

from game.backends.base import GenerationRequest
from game.backends.remote import RemoteBackend
from game.controller import GameController
from game.prompt import CHATML
from game.session import DEFAULT_SAMPLING, Session
from tests.factories import make_scenario
from tests.llama_server import LlamaServer

pytestmark = pytest.mark.model

NOTICE = "cannot take the story so far in place"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LlamaServer:
    """A server of its own: which slots other games have used decides where a summary goes.
    Without its prompt cache in memory (``--cache-ram 0``, and servers older than it), as the
    fallback is then plain: a server that keeps one restores the game's prompt from it after a
    summary on the game's slot, by itself."""
    folder = tmp_path_factory.mktemp("memory-server")
    started = LlamaServer(folder, extra=("--cache-ram", "0")).start()
    yield started
    started.stop()


def slide(server: LlamaServer, slot: int, thing: str) -> tuple[GameController, RemoteBackend]:
    backend = RemoteBackend(server.url, slot=slot, seed=3, n_ctx=768)
    scenario = make_scenario(sampling={"max_tokens": 24}, choice_mode="free", summary_budget=60)
    session = Session(scenario, backend, CHATML, seed=3, fixed_reply_tokens=24)
    game = GameController(session, None)
    for turn in range(40):
        if game.play(f"I open {thing} number {turn} and step through it quietly.").result.slid:
            return game, backend
    raise AssertionError("the window never slid")


def slot_info(backend: RemoteBackend, number: int) -> dict:
    return next(slot for slot in backend.slots() or [] if slot["id"] == number)


def holds_summary(backend: RemoteBackend, number: int, stats) -> bool:
    """Whether slot ``number`` holds the summary's prompt and reply."""
    held = slot_info(backend, number)["n_prompt_tokens"]
    return held == stats.prompt_tokens + stats.generated_tokens - 1


def use_slot(server: LlamaServer, number: int) -> None:
    """Another game's reply on slot ``number``."""
    other = RemoteBackend(server.url, slot=number, seed=1)
    request = GenerationRequest(max_tokens=2, sampling=DEFAULT_SAMPLING)
    other.generate([other.tokenize("Hello there.", special=False)], request, lambda t, p: True)


def test_a_summary_goes_on_an_idle_slot_and_the_game_slot_keeps_its_cache(server):
    game, backend = slide(server, 0, "door")
    assert not backend.edits_cache_in_place
    assert slot_info(backend, 1).get("id_task") is None  # no game has used slot 1
    game_task = slot_info(backend, 0)["id_task"]
    outcome = game.work_in_background()
    assert outcome is not None and outcome.problem is None and outcome.summary
    assert outcome.prepare_stats is None  # nothing to make ready on a server
    assert outcome.summary_stats is not None
    # Written on slot 1; slot 0 still holds the game's last prompt.
    assert holds_summary(backend, 1, outcome.summary_stats)
    assert slot_info(backend, 0)["id_task"] == game_task
    assert backend.slot == 0
    assert [notice for notice in game.take_notices() if NOTICE in notice]
    session = game.session
    result = game.play("I look around the room.").result
    # The fallback: everything after the common prefix is read again (the summary, the kept
    # exchanges, the action), but not the system prompt the game's slot kept.
    assert result.stats.evaluated_tokens <= result.stats.prompt_tokens - len(session.system) + 2
    window = sum(exchange.token_count for exchange in session.kept_exchanges()[:-1])
    assert result.stats.evaluated_tokens >= window
    assert not [notice for notice in game.take_notices() if NOTICE in notice]  # told once
    # The next summary may use slot 1 again: only this game's summary ran there.
    assert backend._aside_slot() == 1
    game.close()


def test_with_no_free_slot_the_summary_takes_the_game_slot_and_the_turn_reads_it_all(server):
    use_slot(server, 0)  # another game's slot
    game, backend = slide(server, 1, "window")
    assert backend._aside_slot() is None
    outcome = game.work_in_background()
    assert outcome is not None and outcome.problem is None and outcome.summary
    assert outcome.summary_stats is not None
    assert holds_summary(backend, 1, outcome.summary_stats)
    assert [notice for notice in game.take_notices() if NOTICE in notice]
    result = game.play("I look around the room.").result
    # The system prompt is read again too: the slot held the summary's prompt, which starts
    # with a few of the same marker tokens only.
    assert result.stats.evaluated_tokens >= result.stats.prompt_tokens - 8
    assert result.stats.evaluated_tokens > result.stats.prompt_tokens - len(game.session.system)
    game.close()
