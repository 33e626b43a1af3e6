"""``bench choices``: how often each choice mode ends a reply with N distinct options, and at
what cost, on the same scenarios, seeds and actions."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from game.backends.base import Backend
from game.bench import with_reply_length
from game.choices import distinct_count
from game.prompt import PromptFormat
from game.scenario import Scenario
from game.session import ChoiceMode, Session

FREE_ACTIONS = (
    "I look around carefully.",
    "I listen for any sound.",
    "I search the nearest shelf.",
    "I call out and wait for an answer.",
    "I move on, keeping to the shadows.",
)
MODES: tuple[ChoiceMode, ...] = ("guided", "free")


@dataclass(frozen=True)
class TurnSample:
    mode: str
    scenario: str
    turn: int
    choices: int
    distinct: int
    wanted: int
    reply_tokens: int
    generated_tokens: int
    decode_s: float
    passes: int
    total_s: float
    option_passes: int


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    turns: int
    exact_share: float
    none_share: float
    mean_reply_tokens: float
    tokens_per_s: float
    mean_turn_s: float
    mean_option_passes: float


def play_mode(
    backend: Backend,
    fmt: PromptFormat,
    scenarios: list[Scenario],
    mode: ChoiceMode,
    *,
    turns: int,
    seed: int,
    max_tokens: int,
) -> list[TurnSample]:
    """Play ``turns`` turns of every scenario in ``mode``: the opening, then alternately the
    offered options and free actions, so both modes face the same kinds of input."""
    samples: list[TurnSample] = []
    for scenario in scenarios:
        session = Session(
            with_reply_length(scenario, max_tokens), backend, fmt, choice_mode=mode, seed=seed
        )
        action = scenario.opening
        for turn in range(turns):
            result = session.play(action)
            stats = result.stats
            model_open = len(backend.tokenize(fmt.model_prefix, special=True))
            model_close = len(backend.tokenize(fmt.model_suffix, special=True))
            reply_tokens = len(session.exchanges[-1].reply) - model_open - model_close
            samples.append(
                TurnSample(
                    mode=mode,
                    scenario=scenario.id,
                    turn=turn + 1,
                    choices=len(result.choices),
                    distinct=distinct_count(result.choices),
                    wanted=scenario.choices,
                    reply_tokens=reply_tokens,
                    generated_tokens=stats.generated_tokens,
                    decode_s=max(stats.decode_seconds, 0.0),
                    passes=stats.passes,
                    total_s=stats.total_s,
                    option_passes=result.option_passes,
                )
            )
            if result.choices and turn % 2 == 0:
                action = result.choices[turn % len(result.choices)]
            else:
                action = FREE_ACTIONS[turn % len(FREE_ACTIONS)]
    return samples


def summarize(mode: str, samples: list[TurnSample]) -> ModeSummary:
    turns = len(samples)
    exact = sum(s.choices == s.wanted and s.distinct == s.wanted for s in samples)
    none = sum(s.choices == 0 for s in samples)
    # Tokens after each pass's first, over the time after each pass's first token: the speed
    # of decoding alone, as llama.cpp's own eval timing counts it.
    generated = sum(s.generated_tokens - s.passes for s in samples)
    decode = sum(s.decode_s for s in samples)
    return ModeSummary(
        mode=mode,
        turns=turns,
        exact_share=exact / turns,
        none_share=none / turns,
        mean_reply_tokens=statistics.fmean(s.reply_tokens for s in samples),
        tokens_per_s=generated / decode if decode else 0.0,
        mean_turn_s=statistics.fmean(s.total_s for s in samples),
        mean_option_passes=statistics.fmean(s.option_passes for s in samples),
    )


def same_prompt_speed(
    backend: Backend,
    fmt: PromptFormat,
    scenarios: list[Scenario],
    *,
    seeds: int = 3,
    tokens: int = 48,
) -> dict[str, float]:
    """Decoding speed of each mode on identical prompts (each scenario's opening), so that the
    grammar's own cost is measured apart from the different histories the two modes' sessions
    build (guided replies run longer, and longer contexts decode slower)."""
    from game.backends.base import GenerationRequest
    from game.grammar import reply_grammar
    from game.session import DEFAULT_SAMPLING

    speeds: dict[str, list[float]] = {"guided": [], "free": []}
    for scenario in scenarios:
        session = Session(scenario, backend, fmt, choice_mode="free")
        opening = make_opening_segments(session)
        for seed in range(seeds):
            for mode, grammar in (("free", None), ("guided", reply_grammar(scenario.choices))):
                request = GenerationRequest(
                    max_tokens=tokens, sampling=DEFAULT_SAMPLING, seed=seed, grammar=grammar
                )
                stats = backend.generate(opening, request, lambda token, text: True)
                if stats.tokens_per_s:
                    speeds[mode].append(stats.tokens_per_s)
    guided, free = statistics.median(speeds["guided"]), statistics.median(speeds["free"])
    return {"guided_tokens_per_s": guided, "free_tokens_per_s": free, "ratio": guided / free}


def make_opening_segments(session: Session) -> list[tuple[int, ...]]:
    """The prompt of a scenario's first turn, as segments."""
    from game.transcript import make_segment

    player = make_segment(session.backend, session.format, "user", session.scenario.opening)
    model_open = tuple(session.backend.tokenize(session.format.model_prefix, special=True))
    return [session.system.tokens, player.tokens, model_open]


def run(
    backend: Backend,
    fmt: PromptFormat,
    scenarios: list[Scenario],
    *,
    turns: int,
    seed: int,
    max_tokens: int,
) -> dict[str, object]:
    """Run both modes and return the summaries, the guided/free speed ratio and every turn."""
    summaries: list[ModeSummary] = []
    samples: list[TurnSample] = []
    for mode in MODES:
        mode_samples = play_mode(
            backend, fmt, scenarios, mode, turns=turns, seed=seed, max_tokens=max_tokens
        )
        samples += mode_samples
        summaries.append(summarize(mode, mode_samples))
    guided, free = summaries
    return {
        "model": backend.name,
        "format": fmt.name,
        "scenarios": [scenario.id for scenario in scenarios],
        "turns_per_scenario": turns,
        "seed": seed,
        "max_tokens": max_tokens,
        "modes": [asdict(summary) for summary in summaries],
        "guided_over_free_tokens_per_s": (
            guided.tokens_per_s / free.tokens_per_s if free.tokens_per_s else None
        ),
        "same_prompt": same_prompt_speed(backend, fmt, scenarios),
        "turns": [asdict(sample) for sample in samples],
    }


def render(result: dict[str, object]) -> str:
    from game.bench.table import format_table

    modes = result["modes"]
    assert isinstance(modes, list)
    rows = [
        [
            m["mode"],
            m["turns"],
            f"{m['exact_share']:.1%}",
            f"{m['none_share']:.1%}",
            m["mean_reply_tokens"],
            m["tokens_per_s"],
            m["mean_turn_s"],
            m["mean_option_passes"],
        ]
        for m in modes
    ]
    headers = [
        "mode",
        "turns",
        "N distinct",
        "no options",
        "reply tokens",
        "tokens/s",
        "s/turn",
        "option passes",
    ]
    ratio = result["guided_over_free_tokens_per_s"]
    same = result["same_prompt"]
    assert isinstance(same, dict)
    lines = [
        f"bench choices: {result['model']} ({result['format']}), "
        f"{len(result['scenarios'])} scenarios x {result['turns_per_scenario']} turns, "  # type: ignore[arg-type]
        f"seed {result['seed']}, max_tokens {result['max_tokens']}",
        "",
        format_table(headers, rows),
        "",
        f"tokens/s guided / free: {ratio:.3f}" if ratio else "tokens/s guided / free: n/a",
        f"same prompts (each scenario's opening, 3 seeds, 48 tokens): guided "
        f"{same['guided_tokens_per_s']:.1f} tokens/s, free {same['free_tokens_per_s']:.1f}, "
        f"ratio {same['ratio']:.3f}",
    ]
    return "\n".join(lines)
