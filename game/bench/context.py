"""``bench context``: what keeping the KV cache in step with the window saves.

One scripted session (fixed seed, free-text actions, replies of a fixed length) is played four
times on a fresh model at a small context, so that the window slides several times:

- (a) ``none``: every prompt is evaluated from scratch;
- (b) ``prefix``: llama-cpp-python as it is: the common prefix of the cached and the new prompt
  is reused, and the window drops the oldest exchanges as each turn needs;
- (c) ``shift``: the project's context shift: the span of exchanges that left the window is
  removed from the KV cache and the rest shifted down, and the window slides with hysteresis;
- (d) ``memory``: (c) with memory on, played the way the game plays it (a
  :class:`~game.controller.GameController`): after each turn, as if the player read, the
  story-so-far summary of the exchanges that left the window is written on the side and
  evaluated in place. That background work is counted apart from the visible cost (the
  player's turns), which should stay within (c)'s targets.

(a) to (c) play with summaries off, so that the window keeps no room for a summary and their
numbers stay comparable with those measured before memory existed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from game.bench import with_reply_length
from game.bench.context_table import render
from game.controller import GameController
from game.kvcache import CacheMode
from game.prompt import PromptFormat
from game.scenario import Scenario
from game.session import Session
from game.summarizer import BackgroundOutcome
from game.transcript import closing_tokens, open_model_tokens

__all__ = ["ACTIONS", "STRATEGIES", "TARGETS", "play", "render", "run"]

ACTIONS = (
    "I step through the doorway and let my eyes adjust to the gloom.",
    "I run my fingers along the wall, searching for a hidden latch.",
    "I call out softly and wait for anyone to answer me.",
    "I open my notebook and write down everything I have seen so far.",
    "I pick up the nearest object and turn it over in my hands.",
    "I follow the faint sound coming from somewhere further inside.",
    "I check behind me to make sure nobody is following.",
)


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    cache_mode: CacheMode
    hysteresis: bool
    memory: bool = False


STRATEGIES = (
    Strategy("a", "none: no cache reuse", "none", hysteresis=False),
    Strategy("b", "prefix: llama-cpp-python as it is", "prefix", hysteresis=False),
    Strategy("c", "shift: context shift + hysteresis", "shift", hysteresis=True),
    Strategy("d", "memory: shift + story-so-far summaries", "shift", hysteresis=True, memory=True),
)
# The limits the visible cost of (c), and of (d), should stay within.
TARGETS = {"evaluated_over_new": 1.1, "slid_p95_ttft_over_steady_median": 1.5, "wall_over_b": 0.5}


# Opens a backend (with ``shifts`` and ``close``) for a cache mode: how a server is benchmarked.
Opener = Callable[[CacheMode], Any]


@dataclass(frozen=True)
class TurnCost:
    turn: int
    prompt_tokens: int
    evaluated_tokens: int
    new_tokens: int
    ttft_s: float
    total_s: float
    slid: bool


@dataclass(frozen=True)
class BackgroundCost:
    """The work done while the player read, after one turn of (d)."""

    turn: int
    summary_written: bool
    summary_prompt_tokens: int
    summary_evaluated_tokens: int
    summary_generated_tokens: int
    summary_s: float
    prepare_evaluated_tokens: int
    prepare_s: float
    cancelled: bool
    problem: str | None


@dataclass(frozen=True)
class Played:
    """One strategy's session: each turn's cost, the wall time of the turns (background work
    left out), the KV-cache shifts, and the background work after each turn."""

    costs: list[TurnCost]
    wall_s: float
    shifts: int
    background: list[BackgroundCost]
    background_wall_s: float


@dataclass(frozen=True)
class StrategySummary:
    key: str
    label: str
    evaluated_tokens: int
    new_tokens: int
    mean_ttft_s: float
    p95_ttft_s: float
    wall_s: float
    slides: int
    shifts: int


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)) - 1, 0)
    return ordered[rank]


def open_for(
    model_path: Path,
    strategy: Strategy,
    *,
    n_ctx: int,
    seed: int,
    n_gpu_layers: int | None,
    n_threads: int | None,
    opener: Opener | None,
) -> Any:
    """A fresh backend for ``strategy``: the server's (``opener``) or ``model_path`` loaded."""
    if opener is not None:
        return opener(strategy.cache_mode)
    from game.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        model_path,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        seed=seed,
        cache_mode=strategy.cache_mode,
    )


def background_cost(turn: int, outcome: BackgroundOutcome) -> BackgroundCost:
    summary, prepare = outcome.summary_stats, outcome.prepare_stats
    return BackgroundCost(
        turn=turn,
        summary_written=outcome.summary is not None,
        summary_prompt_tokens=summary.prompt_tokens if summary else 0,
        summary_evaluated_tokens=summary.evaluated_tokens if summary else 0,
        summary_generated_tokens=summary.generated_tokens if summary else 0,
        summary_s=summary.total_s if summary else 0.0,
        prepare_evaluated_tokens=prepare.evaluated_tokens if prepare else 0,
        prepare_s=prepare.total_s if prepare else 0.0,
        cancelled=outcome.cancelled,
        problem=outcome.problem,
    )


def play_session(
    backend: Any,
    scenario: Scenario,
    fmt: PromptFormat,
    strategy: Strategy,
    *,
    turns: int,
    reply_tokens: int,
    seed: int,
) -> Played:
    """Play the scripted session with one strategy on ``backend`` (left open)."""
    session = Session(
        with_reply_length(scenario, reply_tokens),
        backend,
        fmt,
        choice_mode="free",
        seed=seed,
        headroom=None if strategy.hysteresis else 0,
        fixed_reply_tokens=reply_tokens,
        summaries=strategy.memory,
    )
    # With memory on, the game's own flow: the controller plays the turn, then does the work
    # waiting for an idle model (here at once, as if the player read for as long as it takes).
    game = GameController(session, None) if strategy.memory else None
    # Each turn brings the player's segment, its triggered lore and the author's note (read
    # each turn by design, just before the action) and the model's prefix; after the first
    # turn also
    # the previous reply's closing (its suffix, or the next marker's start where markers are
    # text) and its last token, which was sampled but never fed back to the model. Where the
    # reply's last word is tokenized again with the marker (the seam), what that costs beyond
    # these is in the evaluated count.
    model_open = len(open_model_tokens(backend, fmt))
    model_close = len(closing_tokens(backend, fmt))
    costs: list[TurnCost] = []
    background: list[BackgroundCost] = []
    background_wall = 0.0
    started = time.perf_counter()
    for turn in range(turns):
        action = f"{ACTIONS[turn % len(ACTIONS)]} (turn {turn + 1})"
        result = game.play(action).result if game is not None else session.play(action)
        player = len(session.exchanges[-1].player)
        player += result.segments.get("lore", 0) + result.segments.get("note", 0)
        new = player + model_open + model_close + 1 if turn else result.stats.prompt_tokens
        costs.append(
            TurnCost(
                turn=turn + 1,
                prompt_tokens=result.stats.prompt_tokens,
                evaluated_tokens=result.stats.evaluated_tokens,
                new_tokens=new,
                ttft_s=result.stats.ttft_s,
                total_s=result.stats.total_s,
                slid=result.slid,
            )
        )
        if game is not None:
            idle = time.perf_counter()
            outcome = game.work_in_background()
            background_wall += time.perf_counter() - idle
            if outcome is not None:
                background.append(background_cost(turn + 1, outcome))
    wall = time.perf_counter() - started - background_wall
    return Played(costs, wall, getattr(backend, "shifts", 0), background, background_wall)


def play(
    model_path: Path,
    scenario: Scenario,
    fmt: PromptFormat,
    strategy: Strategy,
    *,
    turns: int,
    n_ctx: int,
    reply_tokens: int,
    seed: int,
    n_gpu_layers: int | None,
    n_threads: int | None,
    opener: Opener | None = None,
) -> tuple[list[TurnCost], float, int]:
    """Play the scripted session with one strategy on a fresh backend; return each turn's
    cost, the wall time of the turns and how many times the KV cache was shifted. ``opener``
    gives the backend for a cache mode (a remote server); None loads ``model_path`` locally."""
    played = play_fresh(
        model_path,
        scenario,
        fmt,
        strategy,
        turns=turns,
        n_ctx=n_ctx,
        reply_tokens=reply_tokens,
        seed=seed,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        opener=opener,
    )
    return played.costs, played.wall_s, played.shifts


def play_fresh(
    model_path: Path,
    scenario: Scenario,
    fmt: PromptFormat,
    strategy: Strategy,
    *,
    turns: int,
    n_ctx: int,
    reply_tokens: int,
    seed: int,
    n_gpu_layers: int | None,
    n_threads: int | None,
    opener: Opener | None = None,
) -> Played:
    """:func:`play_session` on a backend opened for it (see :func:`open_for`), then closed."""
    backend = open_for(
        model_path,
        strategy,
        n_ctx=n_ctx,
        seed=seed,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        opener=opener,
    )
    try:
        return play_session(
            backend, scenario, fmt, strategy, turns=turns, reply_tokens=reply_tokens, seed=seed
        )
    finally:
        backend.close()


def summarize(
    strategy: Strategy, costs: list[TurnCost], wall: float, shifts: int
) -> StrategySummary:
    ttfts = [cost.ttft_s for cost in costs]
    return StrategySummary(
        key=strategy.key,
        label=strategy.label,
        evaluated_tokens=sum(cost.evaluated_tokens for cost in costs),
        new_tokens=sum(cost.new_tokens for cost in costs),
        mean_ttft_s=statistics.fmean(ttfts),
        p95_ttft_s=percentile(ttfts, 0.95),
        wall_s=wall,
        slides=sum(cost.slid for cost in costs),
        shifts=shifts,
    )


def visible_targets(summary: StrategySummary, costs: list[TurnCost], b: StrategySummary) -> dict:
    """The visible cost of a strategy against :data:`TARGETS` (the player's turns only)."""
    slid = [cost.ttft_s for cost in costs if cost.slid]
    steady = [cost.ttft_s for cost in costs[1:] if not cost.slid]
    slid_p95 = percentile(slid, 0.95) if slid else None
    steady_median = statistics.median(steady) if steady else None
    return {
        "evaluated_over_new": summary.evaluated_tokens / summary.new_tokens,
        "slid_p95_ttft_over_steady_median": (
            slid_p95 / steady_median if slid_p95 is not None and steady_median else None
        ),
        "wall_over_b": summary.wall_s / b.wall_s,
    }


def background_totals(played: Played) -> dict[str, object]:
    """All the work memory added while the player read, summed over the session."""
    work = played.background

    def total(name: str) -> Any:
        return sum(getattr(item, name) for item in work)

    summary_evaluated = total("summary_evaluated_tokens")
    prepare_evaluated = total("prepare_evaluated_tokens")
    return {
        "rounds": len(work),
        "summaries": sum(item.summary_written for item in work),
        "cancelled": sum(item.cancelled for item in work),
        "problems": [item.problem for item in work if item.problem],
        "summary_prompt_tokens": total("summary_prompt_tokens"),
        "summary_evaluated_tokens": summary_evaluated,
        "summary_generated_tokens": total("summary_generated_tokens"),
        "summary_s": total("summary_s"),
        "prepare_evaluated_tokens": prepare_evaluated,
        "prepare_s": total("prepare_s"),
        "evaluated_tokens": summary_evaluated + prepare_evaluated,
        "generated_tokens": total("summary_generated_tokens"),
        "seconds": total("summary_s") + total("prepare_s"),
        "wall_s": played.background_wall_s,
    }


def run(
    model_path: Path,
    scenario: Scenario,
    fmt: PromptFormat,
    *,
    turns: int,
    n_ctx: int,
    reply_tokens: int,
    seed: int,
    n_gpu_layers: int | None = None,
    n_threads: int | None = None,
    opener: Opener | None = None,
    model_name: str | None = None,
) -> dict[str, object]:
    """Run the four strategies and return their summaries, the ratios, the targets and (d)'s
    background work. With ``opener`` (a server), each strategy plays on the backend it opens:
    ``none`` sends ``cache_prompt: false``, ``prefix`` the prompt cache alone, ``shift`` (and
    ``memory``) adds the server's KV reuse by shifting (``n_cache_reuse``); a server cannot
    take a summary in place, so there the turn after each summary reads the window again."""
    summaries: dict[str, StrategySummary] = {}
    played: dict[str, Played] = {}
    for strategy in STRATEGIES:
        played[strategy.key] = record = play_fresh(
            model_path,
            scenario,
            fmt,
            strategy,
            turns=turns,
            n_ctx=n_ctx,
            reply_tokens=reply_tokens,
            seed=seed,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
            opener=opener,
        )
        summaries[strategy.key] = summarize(strategy, record.costs, record.wall_s, record.shifts)
    a, b, c, d = (summaries[key] for key in "abcd")
    c_targets = visible_targets(c, played["c"].costs, b)
    d_targets = visible_targets(d, played["d"].costs, b)
    per_turn = {key: [asdict(cost) for cost in record.costs] for key, record in played.items()}
    return {
        "model": model_name or model_path.name,
        "format": fmt.name,
        "scenario": scenario.id,
        "turns": turns,
        "n_ctx": n_ctx,
        "reply_tokens": reply_tokens,
        "seed": seed,
        "strategies": [asdict(summary) for summary in summaries.values()],
        "ratios": {
            "evaluated_c_over_a": c.evaluated_tokens / a.evaluated_tokens,
            "evaluated_c_over_b": c.evaluated_tokens / b.evaluated_tokens,
            "wall_c_over_a": c.wall_s / a.wall_s,
            "wall_c_over_b": c.wall_s / b.wall_s,
            "evaluated_d_over_c": d.evaluated_tokens / c.evaluated_tokens,
            "mean_ttft_d_over_c": d.mean_ttft_s / c.mean_ttft_s,
            "p95_ttft_d_over_c": d.p95_ttft_s / c.p95_ttft_s,
            "wall_d_over_c": d.wall_s / c.wall_s,
        },
        "targets": {f"c_{name}": value for name, value in c_targets.items()}
        | {f"d_{name}": value for name, value in d_targets.items()},
        "target_limits": dict(TARGETS),
        "background": background_totals(played["d"]),
        "per_turn": per_turn,
        "per_turn_background": [asdict(item) for item in played["d"].background],
    }
