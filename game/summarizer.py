"""The work a game does while the player reads: the story-so-far summary of the exchanges that
left the window, and the prompt made ready around it. Domain code: a session, a backend, a stop
flag; the controller decides when it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from game.backends.base import (
    BackendError,
    GenerationCancelled,
    GenerationRequest,
    GenerationStats,
)
from game.memory import clean_summary
from game.scenario import Sampling
from game.session import Session, SummaryJob
from game.streaming import StopScanner

log = logging.getLogger(__name__)

# Summaries are records, not stories: sampled cooler than the narration.
SUMMARY_TEMPERATURE = 0.3
# Added to the game's seed so that a summary's seed never equals a turn's.
SUMMARY_SEED_OFFSET = 1_000_003
# The most summaries written in one round (a long gap catches up over several rounds).
MAX_JOBS = 4


@dataclass(frozen=True)
class BackgroundOutcome:
    """What one round of background work did.

    Attributes:
        summary: The summary kept this round, or None.
        through: The exchanges it covers.
        summary_stats: What writing it cost (None when none was written).
        prepare_stats: What making the prompt ready in place cost (None when not done).
        cancelled: The player acted before it was done (it is tried again later).
        problem: A one-line reason it failed, or None.
    """

    summary: str | None = None
    through: int = 0
    summary_stats: GenerationStats | None = None
    prepare_stats: GenerationStats | None = None
    cancelled: bool = False
    problem: str | None = None

    @property
    def seconds(self) -> float:
        """The model time it took."""
        stats = [self.summary_stats, self.prepare_stats]
        return sum(item.total_s for item in stats if item is not None)

    @property
    def evaluated_tokens(self) -> int:
        """Prompt tokens the model read for it (the summary's prompt, the tokens in place)."""
        stats = [self.summary_stats, self.prepare_stats]
        return sum(item.evaluated_tokens for item in stats if item is not None)


def _added(first: GenerationStats, second: GenerationStats) -> GenerationStats:
    """Two generations' costs as one."""
    return replace(
        first,
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        evaluated_tokens=first.evaluated_tokens + second.evaluated_tokens,
        generated_tokens=first.generated_tokens + second.generated_tokens,
        total_s=first.total_s + second.total_s,
        decode_s=first.decode_seconds + second.decode_seconds,
        passes=first.passes + second.passes,
        reading_s=first.reading_s + second.reading_s,
    )


def summary_sampling(sampling: Sampling) -> Sampling:
    """The game's sampling, cooler."""
    temperature = min(sampling.temperature or 0.0, SUMMARY_TEMPERATURE)
    return sampling.model_copy(update={"temperature": temperature})


def write_summary(
    session: Session, job: SummaryJob, should_stop: Callable[[], bool]
) -> tuple[str, GenerationStats]:
    """Have the model write the summary ``job`` asks for, off the game's cache.

    Raises:
        GenerationCancelled: when ``should_stop`` turned True before it was done.
        BackendError: when the model fails.
    """
    scanner = StopScanner(session.format.stop)

    def on_token(_token: int, piece: str) -> bool:
        scanner.feed(piece)
        return not scanner.stopped and not should_stop()

    seed = None if session.seed is None else session.seed + SUMMARY_SEED_OFFSET + job.through
    request = GenerationRequest(
        max_tokens=job.max_tokens, sampling=summary_sampling(session.sampling), seed=seed
    )
    stats = session.backend.generate_aside(
        job.segments, request, on_token, on_progress=lambda _done, _total: not should_stop()
    )
    if should_stop():
        raise GenerationCancelled("the summary was stopped: the player acted")
    if not scanner.stopped:
        scanner.flush()
    return clean_summary(scanner.text), stats


def run_background(
    session: Session, should_stop: Callable[[], bool], *, prepare: bool
) -> BackgroundOutcome:
    """Write the pending summary (if any) and, with ``prepare`` (or after a new summary), make
    the backend's cache hold the window with it in place, where the backend can.

    Never raises for the model's failures or a stop: they are in the outcome.
    """
    summary: str | None = None
    through = 0
    summary_stats: GenerationStats | None = None
    prepare_stats: GenerationStats | None = None
    try:
        # After a long gap the summary catches up job by job (see Session.summary_job).
        for _ in range(MAX_JOBS):
            job = session.summary_job()
            if job is None or should_stop():
                break
            text, stats = write_summary(session, job, should_stop)
            summary_stats = stats if summary_stats is None else _added(summary_stats, stats)
            if not session.apply_summary(job, text):
                log.warning("the summary of %d exchanges was empty; not kept", job.through)
                break
            summary, through = text, job.through
            log.info("story so far: %d exchanges in %d characters", job.through, len(text))
        if (prepare or summary is not None) and session.backend.edits_cache_in_place:
            prepare_stats = session.backend.prepare(
                session.window_segments(), on_progress=lambda _d, _t: not should_stop()
            )
    except GenerationCancelled:
        return BackgroundOutcome(summary, through, summary_stats, prepare_stats, cancelled=True)
    except BackendError as exc:
        log.error("background work failed: %s", exc)
        return BackgroundOutcome(summary, through, summary_stats, prepare_stats, problem=str(exc))
    return BackgroundOutcome(summary, through, summary_stats, prepare_stats)
