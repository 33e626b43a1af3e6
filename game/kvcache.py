"""Plan how a KV cache holding one token list can serve the next prompt. Pure functions.

The llama.cpp backend carries the plans out on the model's cache; the scripted backend on a
list, so that tests can check what every turn had to evaluate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

CacheMode = Literal["none", "prefix", "shift"]
# The least run of tokens that must line up again after a removed span before the cache is
# shifted to reuse it (or the whole rest of the prompt, when that is shorter).
MIN_SHIFT_MATCH = 16


@dataclass(frozen=True)
class CachePlan:
    """What to do with the cache before evaluating a prompt.

    Attributes:
        drop: A span ``(start, end)`` of cache positions to remove, the positions after it moving
            down by ``end - start``; None to remove nothing.
        reuse: How many leading prompt tokens the cache then holds; the rest is evaluated.
    """

    drop: tuple[int, int] | None
    reuse: int


def common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """Length of the longest common start of two token lists."""
    common = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        common += 1
    return common


def realign(cached: Sequence[int], prompt: Sequence[int], common: int) -> int | None:
    """Where the cache lines up with the prompt again after their common prefix.

    Returns the first cache position ``q > common`` whose tokens match the prompt from
    ``common`` on for :data:`MIN_SHIFT_MATCH` tokens (fewer only where the cache or the prompt
    ends first), or None. Removing ``cached[common:q]`` then leaves a cache that starts like
    the prompt for longer.
    """
    rest = prompt[common:]
    if not rest:
        return None
    wanted = min(MIN_SHIFT_MATCH, len(rest))
    for q in range(common + 1, len(cached)):
        if cached[q] != rest[0]:
            continue
        run = min(wanted, len(cached) - q)
        if list(cached[q : q + run]) == list(rest[:run]) and (
            run == wanted or q + run == len(cached)
        ):
            return q
    return None


def plan(cached: Sequence[int], prompt: Sequence[int], mode: CacheMode) -> CachePlan:
    """The cheapest way for a cache holding ``cached`` to serve ``prompt`` in ``mode``.

    At least the last prompt token is always left to evaluate: sampling needs its logits.
    """
    if mode == "none" or not prompt:
        return CachePlan(None, 0)
    common = common_prefix(cached, prompt)
    drop = None
    if mode == "shift" and common < len(cached):
        resume = realign(cached, prompt, common)
        if resume is not None:
            drop = (common, resume)
            common += common_prefix(cached[resume:], prompt[common:])
    return CachePlan(drop, min(common, len(prompt) - 1))


def apply(cached: Sequence[int], cache_plan: CachePlan) -> list[int]:
    """The cached tokens after the plan's drop and before evaluation (kept prefix only)."""
    tokens = list(cached)
    if cache_plan.drop is not None:
        start, end = cache_plan.drop
        del tokens[start:end]
    return tokens[: cache_plan.reuse]
