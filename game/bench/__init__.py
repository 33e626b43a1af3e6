"""Benchmarks the project ships: ``python -m game bench [context|choices]``. Each prints a table
(or JSON) of measured numbers; none of them is a test."""

from game.scenario import Scenario


def with_reply_length(scenario: Scenario, max_tokens: int) -> Scenario:
    """The scenario with the benchmark's reply length in place of its own, so that every
    scenario costs the same and the session sizes its window for that length."""
    sampling = scenario.sampling.model_copy(update={"max_tokens": max_tokens})
    return scenario.model_copy(update={"sampling": sampling})
