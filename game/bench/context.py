"""``bench context``: what keeping the KV cache in step with the window saves.

One scripted session (fixed seed, free-text actions, replies of a fixed length) is played three
times on a fresh model at a small context, so that the window slides several times:

- (a) ``none``: every prompt is evaluated from scratch;
- (b) ``prefix``: llama-cpp-python as it is: the common prefix of the cached and the new prompt
  is reused, and the window drops the oldest exchanges as each turn needs;
- (c) ``shift``: the project's context shift: the span of exchanges that left the window is
  removed from the KV cache and the rest shifted down, and the window slides with hysteresis.
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
from game.kvcache import CacheMode
from game.prompt import PromptFormat
from game.scenario import Scenario
from game.session import Session
from game.transcript import closing_tokens, open_model_tokens

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


STRATEGIES = (
    Strategy("a", "none: no cache reuse", "none", hysteresis=False),
    Strategy("b", "prefix: llama-cpp-python as it is", "prefix", hysteresis=False),
    Strategy("c", "shift: context shift + hysteresis", "shift", hysteresis=True),
)


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
    """Play the scripted session with one strategy; return each turn's cost, the wall time and
    how many times the KV cache was shifted. ``opener`` gives the backend for a cache mode
    (a remote server); None loads ``model_path`` locally."""
    if opener is not None:
        backend = opener(strategy.cache_mode)
    else:
        from game.backends.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend(
            model_path,
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
            seed=seed,
            cache_mode=strategy.cache_mode,
        )
    try:
        session = Session(
            with_reply_length(scenario, reply_tokens),
            backend,
            fmt,
            choice_mode="free",
            seed=seed,
            headroom=None if strategy.hysteresis else 0,
            fixed_reply_tokens=reply_tokens,
        )
        # Each turn brings the player's segment and the model's prefix; after the first turn also
        # the previous reply's closing (its suffix, or the next marker's start where markers are
        # text) and its last token, which was sampled but never fed back to the model. Where the
        # reply's last word is tokenized again with the marker (the seam), what that costs beyond
        # these is in the evaluated count.
        model_open = len(open_model_tokens(backend, fmt))
        model_close = len(closing_tokens(backend, fmt))
        costs: list[TurnCost] = []
        started = time.perf_counter()
        for turn in range(turns):
            action = f"{ACTIONS[turn % len(ACTIONS)]} (turn {turn + 1})"
            result = session.play(action)
            player = len(session.exchanges[-1].player)
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
        return costs, time.perf_counter() - started, backend.shifts
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
    """Run the three strategies and return their summaries, the ratios and the targets. With
    ``opener`` (a server), each strategy plays on the backend it opens: ``none`` sends
    ``cache_prompt: false``, ``prefix`` the prompt cache alone, ``shift`` adds the server's KV
    reuse by shifting (``n_cache_reuse``)."""
    summaries: dict[str, StrategySummary] = {}
    turns_by_strategy: dict[str, list[dict[str, object]]] = {}
    shift_costs: list[TurnCost] = []
    for strategy in STRATEGIES:
        costs, wall, shifts = play(
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
        summaries[strategy.key] = summarize(strategy, costs, wall, shifts)
        turns_by_strategy[strategy.key] = [asdict(cost) for cost in costs]
        if strategy.key == "c":
            shift_costs = costs
    a, b, c = summaries["a"], summaries["b"], summaries["c"]
    slid = [cost.ttft_s for cost in shift_costs if cost.slid]
    steady = [cost.ttft_s for cost in shift_costs[1:] if not cost.slid]
    slid_p95 = percentile(slid, 0.95) if slid else None
    steady_median = statistics.median(steady) if steady else None
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
        },
        "targets": {
            "c_evaluated_over_new": c.evaluated_tokens / c.new_tokens,
            "c_slid_p95_ttft_over_steady_median": (
                slid_p95 / steady_median if slid_p95 is not None and steady_median else None
            ),
            "wall_c_over_b": c.wall_s / b.wall_s,
        },
        "per_turn": turns_by_strategy,
    }


def render(result: dict[str, object]) -> str:
    from game.bench.table import format_table

    strategies = result["strategies"]
    ratios = result["ratios"]
    targets = result["targets"]
    assert isinstance(strategies, list) and isinstance(ratios, dict) and isinstance(targets, dict)
    rows = [
        [
            f"({s['key']}) {s['label']}",
            s["evaluated_tokens"],
            s["mean_ttft_s"],
            s["p95_ttft_s"],
            s["wall_s"],
            s["slides"],
            s["shifts"],
        ]
        for s in strategies
    ]
    headers = ["strategy", "evaluated", "mean ttft s", "p95 ttft s", "wall s", "slides", "shifts"]
    slid_ratio = targets["c_slid_p95_ttft_over_steady_median"]

    def verdict(value: float | None, limit: float) -> str:
        if value is None:
            return "n/a (no slide)"
        return f"{value:.3f} (target <= {limit}: {'met' if value <= limit else 'NOT met'})"

    title = (
        f"bench context: {result['model']} ({result['format']}), "
        f"scenario {result['scenario']}, {result['turns']} turns, n_ctx {result['n_ctx']}, "
        f"replies of {result['reply_tokens']} tokens, seed {result['seed']}"
    )
    evaluated = targets["c_evaluated_over_new"]
    return "\n".join(
        [
            title,
            "",
            format_table(headers, rows),
            "",
            f"evaluated tokens  c/a {ratios['evaluated_c_over_a']:.3f}   "
            f"c/b {ratios['evaluated_c_over_b']:.3f}",
            f"wall time         c/a {ratios['wall_c_over_a']:.3f}   "
            f"c/b {ratios['wall_c_over_b']:.3f}",
            "",
            "targets for (c):",
            f"  evaluated / new tokens:               {verdict(evaluated, 1.1)}",
            f"  p95 ttft slid / median ttft not slid: {verdict(slid_ratio, 1.5)}",
            f"  wall time c/b:                        {verdict(targets['wall_c_over_b'], 0.5)}",
        ]
    )
