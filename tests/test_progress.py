"""Prompt-reading progress: the estimate, and the scripted backend's reports and cancel."""

from __future__ import annotations

import pytest

from game.backends.base import GenerationCancelled
from game.backends.scripted import ScriptedBackend
from game.progress import ReadingProgress, format_seconds
from game.prompt import METHARME
from game.session import Session
from tests.factories import make_scenario


def test_time_left_follows_the_rate_so_far():
    now = [10.0]
    progress = ReadingProgress(clock=lambda: now[0])
    assert progress.left_s is None
    now[0] = 14.0
    progress.update(256, 1024)
    assert progress.left_s == pytest.approx(12.0)
    assert progress.line() == "reading the story: 256/1024 tokens (25%), about 12 s left"
    assert format_seconds(65) == "1 min 05 s"


def long_session(backend: ScriptedBackend) -> Session:
    scenario = make_scenario(setting="The house is old. " * 80)
    return Session(scenario, backend, METHARME, seed=1)


def test_a_session_reports_reading_and_a_cancel_leaves_it_unchanged():
    backend = ScriptedBackend(read_batch=32)
    session = long_session(backend)
    reports: list[tuple[int, int]] = []
    result = session.play("Start!", on_progress=lambda d, t: reports.append((d, t)) or True)
    total = result.stats.evaluated_tokens
    assert total > 100 and reports[-1] == (total, total)
    assert [done for done, _ in reports] == sorted({*range(32, total, 32), total})

    cancelled: list[int] = []

    def stop_after_two(done: int, total: int) -> bool:
        cancelled.append(done)
        return len(cancelled) < 2

    before = list(session.exchanges)
    backend.reset_cache()
    with pytest.raises(GenerationCancelled):
        session.play("I open the door.", on_progress=stop_after_two)
    assert session.exchanges == before and cancelled == [32, 64]
    # What was read stays cached: the next try reads only the rest.
    again = session.play("I open the door.")
    assert again.stats.evaluated_tokens == again.stats.prompt_tokens - 64
