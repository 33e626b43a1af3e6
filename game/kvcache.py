"""Plan how a KV cache holding one token list can serve the next prompt. Pure functions.

The llama.cpp backend carries the plans out on the model's cache; the scripted backend on a
list, so that tests can check what every turn had to evaluate.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

CacheMode = Literal["none", "prefix", "shift"]
# The least run of tokens that must line up again after a removed span before the cache is
# shifted to reuse it (or the whole rest of the prompt, when that is shorter).
MIN_SHIFT_MATCH = 16
# The least run that must line up again after a span replaced by new tokens (a story-so-far
# summary written in place of the old one and of the exchanges it now covers): longer, since
# a chance match of a few tokens is not worth evaluating the new ones out of order for.
MIN_REPLACE_MATCH = 32
# The most edits (removed or replaced spans) made to the cache for one prompt.
MAX_EDITS = 3


@dataclass(frozen=True)
class CachePlan:
    """What to do with the cache before evaluating a prompt.

    Attributes:
        drop: A span ``(start, end)`` of cache positions to remove, the positions after it moving
            down by ``end - start``; None to remove nothing.
        reuse: How many leading prompt tokens the cache then holds; the rest is evaluated.
        insert: Prompt tokens evaluated in place of the dropped span (``prompt[start:start +
            insert]`` at positions ``start`` on), the cached tokens after the span moving to
            follow them; 0 for a plain removal.
    """

    drop: tuple[int, int] | None
    reuse: int
    insert: int = 0

    def evaluated(self, prompt_tokens: int) -> int:
        """Prompt tokens the plan leaves to evaluate: those inserted, and those after the
        reused prefix."""
        return self.insert + prompt_tokens - self.reuse


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


def realign_after_insert(
    cached: Sequence[int],
    prompt: Sequence[int],
    common: int,
    boundaries: Collection[int] | None = None,
) -> tuple[int, int, int] | None:
    """The longest run of the cache after ``common`` that the prompt holds later than
    ``common``: ``(q, r, run)`` with ``cached[q:q + run] == prompt[r:r + run]``, ``q >= common``,
    ``r > common`` and ``run >= MIN_REPLACE_MATCH``; None when there is none.

    Replacing ``cached[common:q]`` (nothing, when ``q == common``: a pure insertion) by
    ``prompt[common:r]`` then reuses the run. Only runs that
    start where the two lists differ are measured (a run's later start is the same run), and
    with ``boundaries`` (where the prompt's segments start) only runs starting at one: a new
    summary is followed by the first exchange kept, never by half of one.
    """
    width = MIN_REPLACE_MATCH
    starts: dict[tuple[int, ...], list[int]] = {}
    for q in range(common, len(cached) - width + 1):
        starts.setdefault(tuple(cached[q : q + width]), []).append(q)
    if not starts:
        return None
    best: tuple[int, int, int] | None = None
    for r in range(common + 1, len(prompt) - width + 1):
        if boundaries is not None and r not in boundaries:
            continue
        for q in starts.get(tuple(prompt[r : r + width]), ()):
            earlier = r - 1 > common and (boundaries is None or r - 1 in boundaries)
            if q > common and earlier and cached[q - 1] == prompt[r - 1]:
                continue  # inside a run that starts earlier (and is measured from there)
            run = width + common_prefix(cached[q + width :], prompt[r + width :])
            if best is None or run > best[2]:
                best = (q, r, run)
    return best


def plan(
    cached: Sequence[int],
    prompt: Sequence[int],
    mode: CacheMode,
    boundaries: Collection[int] | None = None,
) -> CachePlan:
    """The cheapest way for a cache holding ``cached`` to serve ``prompt`` in ``mode``.

    In ``shift`` mode a span of the cache may be removed (old exchanges that left the window)
    or replaced by new prompt tokens evaluated in place (a new summary), whichever leaves the
    least to evaluate (see :func:`realign_after_insert` for ``boundaries``). One plan makes one
    edit: a backend plans again after it (:data:`MAX_EDITS` in all), since a turn may need a
    replaced summary and a dropped note. At least the last prompt token is always left to
    evaluate: sampling needs its logits.
    """
    if mode == "none" or not prompt:
        return CachePlan(None, 0)
    common = common_prefix(cached, prompt)
    if mode != "shift" or common >= len(cached):
        return CachePlan(None, min(common, len(prompt) - 1))
    drop, insert, reuse = None, 0, common
    resume = realign(cached, prompt, common)
    if resume is not None:
        drop = (common, resume)
        reuse = common + common_prefix(cached[resume:], prompt[common:])
    replaced = realign_after_insert(cached, prompt, common, boundaries)
    if replaced is not None:
        q, r, run = replaced
        # A replacement evaluates the inserted tokens too: it wins on a longer run alone.
        if run > reuse - common:
            drop, insert, reuse = (common, q), r - common, r + run
    return CachePlan(drop, min(reuse, len(prompt) - 1), insert)


def apply(cached: Sequence[int], prompt: Sequence[int], cache_plan: CachePlan) -> list[int]:
    """The cached tokens after the plan's edit (a span dropped, or replaced by prompt tokens),
    all of them: its first ``cache_plan.reuse`` are the prompt's, and what follows may serve
    the next edit."""
    tokens = list(cached)
    if cache_plan.drop is not None:
        start, end = cache_plan.drop
        tokens[start:end] = prompt[start : start + cache_plan.insert]
    return tokens


def segment_starts(segments: Sequence[Sequence[int]]) -> set[int]:
    """Where each segment starts in the joined prompt."""
    starts, position = set(), 0
    for segment in segments:
        starts.add(position)
        position += len(segment)
    return starts
