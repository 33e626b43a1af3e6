"""The table ``bench context`` prints (see :mod:`game.bench.context`)."""

from __future__ import annotations

from game.bench.table import format_table


def render(result: dict[str, object]) -> str:
    """The table of a :func:`game.bench.context.run` result, with its ratios and targets."""
    strategies = result["strategies"]
    ratios = result["ratios"]
    targets = result["targets"]
    work = result["background"]
    limits = result["target_limits"]
    assert isinstance(strategies, list) and isinstance(ratios, dict)
    assert isinstance(targets, dict) and isinstance(work, dict) and isinstance(limits, dict)
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

    def verdict(value: float | None, limit: float) -> str:
        if value is None:
            return "n/a (no slide)"
        return f"{value:.3f} (target <= {limit}: {'met' if value <= limit else 'NOT met'})"

    def target_lines(key: str) -> list[str]:
        return [
            f"targets for ({key}):",
            "  evaluated / new tokens:               "
            + verdict(targets[f"{key}_evaluated_over_new"], limits["evaluated_over_new"]),
            "  p95 ttft slid / median ttft not slid: "
            + verdict(
                targets[f"{key}_slid_p95_ttft_over_steady_median"],
                limits["slid_p95_ttft_over_steady_median"],
            ),
            f"  wall time {key}/b:                        "
            + verdict(targets[f"{key}_wall_over_b"], limits["wall_over_b"]),
        ]

    title = (
        f"bench context: {result['model']} ({result['format']}), "
        f"scenario {result['scenario']}, {result['turns']} turns, n_ctx {result['n_ctx']}, "
        f"replies of {result['reply_tokens']} tokens, seed {result['seed']}"
    )
    d = strategies[3]
    problems = work["problems"]
    assert isinstance(problems, list)
    return "\n".join(
        [
            title,
            "",
            format_table(headers, rows),
            "(d): the player's turns only; its background work is below.",
            "",
            f"evaluated tokens  c/a {ratios['evaluated_c_over_a']:.3f}   "
            f"c/b {ratios['evaluated_c_over_b']:.3f}   d/c {ratios['evaluated_d_over_c']:.3f}",
            f"wall time         c/a {ratios['wall_c_over_a']:.3f}   "
            f"c/b {ratios['wall_c_over_b']:.3f}   d/c {ratios['wall_d_over_c']:.3f}",
            f"ttft d/c          mean {ratios['mean_ttft_d_over_c']:.3f}   "
            f"p95 {ratios['p95_ttft_d_over_c']:.3f}",
            "",
            "background work of (d), while the player read:",
            f"  summaries written:  {work['summaries']} in {work['rounds']} idle rounds "
            f"({work['cancelled']} cancelled, {len(problems)} failed)",
            f"  summary prompts:    {work['summary_evaluated_tokens']} tokens evaluated, "
            f"{work['summary_generated_tokens']} generated, {work['summary_s']:.2f} s",
            f"  in place:           {work['prepare_evaluated_tokens']} tokens evaluated, "
            f"{work['prepare_s']:.2f} s",
            f"  all:                {work['evaluated_tokens']} evaluated + "
            f"{work['generated_tokens']} generated in {work['seconds']:.2f} s, beside "
            f"{d['evaluated_tokens']} evaluated in {d['wall_s']:.2f} s of turns",
            *(f"  problem: {problem}" for problem in problems),
            "",
            *target_lines("c"),
            *target_lines("d"),
        ]
    )
