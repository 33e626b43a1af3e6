"""``bench recall``: does the story remember what left the window?

Facts are planted in the first turns (a name, a code, where an object was put), then filler
turns are played until those turns have left the window and the window has slid several times;
then each fact is asked for in a turn whose action is the question (greedy sampling, a fixed
seed), and the reply is scored: does it contain the answer (any case, numbers normalized)? Each
question is taken back (undo) before the next, so that every question sees the same story.

The session is played twice on a freshly opened model, the way the game plays it (a
:class:`~game.controller.GameController`):

- memory on: after each turn, as if the player read, the controller writes the story-so-far
  summary of the exchanges that left the window (and puts it in place);
- memory off: summaries off, no memory: what left the window is gone.

With ``memory_text``, a third run writes the facts in the player's memory ("plot essentials")
instead, with summaries off: whether the model reads what it is given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from game.backends.base import Backend
from game.bench import with_reply_length
from game.bench.context import ACTIONS
from game.controller import GameController
from game.prompt import PromptFormat
from game.scenario import Sampling, Scenario
from game.session import Session

# What the notes say when the model is too small for the numbers to mean anything.
SMALL_MODEL_NOTE = (
    "the embedded SmolLM2-135M is far too small to summarize a story or answer from one: "
    "these numbers show that the benchmark runs, not what memory does for a real model "
    "(run it with --model)"
)
GREEDY = Sampling(temperature=0.0)


@dataclass(frozen=True)
class Fact:
    """A fact the player states in a turn, and the question that asks for it.

    Attributes:
        plant: The player's action that states it.
        question: The action that asks for it.
        answer: What a reply must contain to count (any case, numbers normalized).
        memory: The fact as a line of the player's memory (the memory-text variant).
    """

    plant: str
    question: str
    answer: str
    memory: str


FACTS = (
    Fact(
        "I ask the innkeeper her name, and she tells me it is Maribel.",
        "What is the innkeeper's name?",
        "Maribel",
        "The innkeeper's name is Maribel.",
    ),
    Fact(
        "I read the scrap of paper again: the safe code is 4-1-7. I learn it by heart.",
        "What is the code of the safe?",
        "4-1-7",
        "The safe code is 4-1-7.",
    ),
    Fact(
        "I put the silver compass in my left boot.",
        "Where did I put the silver compass?",
        "left boot",
        "The silver compass is in my left boot.",
    ),
    Fact(
        "The old ferryman tells me that his dog is called Biscuit.",
        "What is the ferryman's dog called?",
        "Biscuit",
        "The ferryman's dog is called Biscuit.",
    ),
    Fact(
        "I count the coins in my purse: there are exactly 23 of them.",
        "How many coins are in my purse?",
        "23",
        "There are 23 coins in my purse.",
    ),
    Fact(
        "I hide the brass key under the blue rug in the hall.",
        "Where did I hide the brass key?",
        "rug",
        "The brass key is hidden under the blue rug in the hall.",
    ),
)

# -- scoring -------------------------------------------------------------------------------------

_UNITS = (  # noqa: SIM905 (one line of words reads better than twenty)
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TEN_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905
_TENS = {name: 10 * (index + 2) for index, name in enumerate(_TEN_WORDS)}
_UNIT_WORD = "|".join(_UNITS[1:10])
_COMPOUND = re.compile(rf"\b({'|'.join(_TENS)})(?:[-\s]+({_UNIT_WORD}))?\b")
_SMALL = re.compile(rf"\b({'|'.join(_UNITS)})\b")
# What may stand between the digits of one number: "4-1-7", "4 1 7", "4, 1, 7", "4.1.7".
_DIGIT_GAP = r"[\s\-\u2010-\u2015,.:/]*"
_DIGIT_GAP_RE = re.compile(rf"(?<=[0-9]){_DIGIT_GAP}(?=[0-9])")


def normalize(text: str) -> str:
    """``text`` as it is compared: case folded, typographic apostrophes plain, number words
    (up to ninety-nine) written in digits, runs of whitespace one space."""
    text = text.casefold().replace("\u2019", "'").replace("\u2018", "'")

    def compound(match: re.Match[str]) -> str:
        tens = _TENS[match.group(1)]
        unit = _UNITS.index(match.group(2)) if match.group(2) else 0
        return str(tens + unit)

    text = _COMPOUND.sub(compound, text)
    text = _SMALL.sub(lambda match: str(_UNITS.index(match.group(1))), text)
    return " ".join(text.split())


def answer_pattern(answer: str) -> re.Pattern[str]:
    """The pattern a reply must match for ``answer``: whole words (a plural -s or -es allowed),
    digits of a number with any of the usual separators between them or none (so "99-9"
    holds "9-9"), nothing glued on."""
    wanted = _DIGIT_GAP_RE.sub("", normalize(answer))
    parts: list[str] = []
    for piece in re.findall(r"[0-9]+|[^0-9]+", wanted):
        if piece.isdigit():
            parts.append(_DIGIT_GAP.join(re.escape(digit) for digit in piece))
        else:
            parts.append(r"\s+".join(re.escape(word) for word in piece.split(" ")))
    plural = "" if wanted[-1:].isdigit() else "(?:e?s)?"
    return re.compile(rf"(?<![a-z0-9])(?:{''.join(parts)}){plural}(?![a-z0-9])")


def recalled(reply: str, answer: str) -> bool:
    """Whether ``reply`` contains ``answer`` (see :func:`answer_pattern`)."""
    if not normalize(answer):
        return False
    return answer_pattern(answer).search(normalize(reply)) is not None


# -- playing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    reply: str
    recalled: bool
    in_summary: bool  # the story so far held the answer when the question was asked


@dataclass(frozen=True)
class RecallRun:
    """One way of playing the session and what it recalled."""

    mode: str  # "on", "off" or "memory text"
    recalled: int
    facts: int
    share: float
    turns: int  # turns played before the questions (the opening, the facts, the filler)
    filler_turns: int
    slides: int
    summaries: int
    planted_left_window: bool
    window_start: int
    background_s: float
    wall_s: float
    summary: str
    answers: list[Answer]


def play_run(
    backend: Backend,
    scenario: Scenario,
    fmt: PromptFormat,
    facts: tuple[Fact, ...],
    mode: str,
    *,
    reply_tokens: int,
    seed: int,
    min_slides: int,
    max_filler: int,
) -> RecallRun:
    """Plant ``facts``, play filler until they left the window and it slid ``min_slides``
    times (at most ``max_filler`` filler turns), then ask for each fact."""
    started = time.perf_counter()
    # Greedy whatever the scenario says: its sampling would win over the session's.
    sampling = scenario.sampling.model_copy(update={"temperature": 0.0})
    session = Session(
        with_reply_length(scenario.model_copy(update={"sampling": sampling}), reply_tokens),
        backend,
        fmt,
        sampling=GREEDY,
        choice_mode="free",
        seed=seed,
        summaries=mode == "on",
    )
    game = GameController(session, None)
    if mode == "memory text":
        game.set_memory("\n".join(fact.memory for fact in facts))
    background_s = 0.0
    summaries = slides = turns = 0

    def turn(action: str | None) -> None:
        nonlocal background_s, summaries, slides, turns
        outcome = game.play_opening() if action is None else game.play(action)
        turns += 1
        slides += outcome.result.slid
        idle()

    def idle() -> None:
        # The game's flow while the player reads: whatever work waits for an idle model.
        nonlocal background_s, summaries
        idle_started = time.perf_counter()
        work = game.work_in_background()
        background_s += time.perf_counter() - idle_started
        summaries += work is not None and work.summary is not None

    if game.needs_opening:
        turn(None)
    for fact in facts:
        turn(fact.plant)
    planted_last = len(session.exchanges) - 1
    filler = 0
    while filler < max_filler and (session.window_start <= planted_last or slides < min_slides):
        turn(ACTIONS[filler % len(ACTIONS)])
        filler += 1
    active = session.memory.active(session.window_start)
    summary = active.text if active is not None else ""
    answers = []
    for fact in facts:
        result = game.play(fact.question).result
        reply = "\n".join([result.narrative, *result.choices])
        answers.append(
            Answer(
                fact.question,
                fact.answer,
                reply,
                recalled(reply, fact.answer),
                recalled(summary, fact.answer),
            )
        )
        game.undo()
        idle()
    hits = sum(answer.recalled for answer in answers)
    return RecallRun(
        mode=mode,
        recalled=hits,
        facts=len(facts),
        share=hits / len(facts) if facts else 0.0,
        turns=turns,
        filler_turns=filler,
        slides=slides,
        summaries=summaries,
        planted_left_window=session.window_start > planted_last,
        window_start=session.window_start,
        background_s=background_s,
        wall_s=time.perf_counter() - started,
        summary=summary,
        answers=answers,
    )


def run(
    open_model: Callable[[], Any],
    scenario: Scenario,
    fmt: PromptFormat,
    *,
    model_name: str,
    small_model: bool,
    facts: int = len(FACTS),
    reply_tokens: int = 48,
    seed: int = 1,
    min_slides: int = 3,
    max_filler: int = 40,
    memory_text: bool = False,
) -> dict[str, object]:
    """Play the session with memory on and off (and, with ``memory_text``, the facts in the
    player's memory), each on a model ``open_model`` opens (closed after)."""
    chosen = FACTS[:facts]
    modes = ["on", "off", *(["memory text"] if memory_text else [])]
    runs = []
    n_ctx = 0
    for mode in modes:
        backend = open_model()
        try:
            n_ctx = backend.n_ctx
            runs.append(
                play_run(
                    backend,
                    scenario,
                    fmt,
                    chosen,
                    mode,
                    reply_tokens=reply_tokens,
                    seed=seed,
                    min_slides=min_slides,
                    max_filler=max_filler,
                )
            )
        finally:
            backend.close()
    return {
        "model": model_name,
        "format": fmt.name,
        "scenario": scenario.id,
        "n_ctx": n_ctx,
        "reply_tokens": reply_tokens,
        "seed": seed,
        "min_slides": min_slides,
        "max_filler": max_filler,
        "facts": [asdict(fact) for fact in chosen],
        "numbers_mean_little": small_model,
        "note": SMALL_MODEL_NOTE if small_model else None,
        "runs": [asdict(item) for item in runs],
    }


def render(result: dict[str, Any]) -> str:
    from game.bench.table import format_table

    runs = result["runs"]
    rows = [
        [
            f"memory {run['mode']}" if run["mode"] in ("on", "off") else run["mode"],
            f"{run['recalled']}/{run['facts']}",
            run["share"],
            run["turns"],
            run["slides"],
            run["summaries"],
            "yes" if run["planted_left_window"] else "NO",
            run["background_s"],
            run["wall_s"],
        ]
        for run in runs
    ]
    headers = [
        "run",
        "recalled",
        "share",
        "turns",
        "slides",
        "summaries",
        "facts left window",
        "background s",
        "wall s",
    ]
    lines = [
        f"bench recall: {result['model']} ({result['format']}), scenario {result['scenario']}, "
        f"n_ctx {result['n_ctx']}, replies of at most {result['reply_tokens']} tokens, greedy, "
        f"seed {result['seed']}, {len(result['facts'])} facts, at least "
        f"{result['min_slides']} slides",
        "",
        format_table(headers, rows),
    ]
    if result["note"]:
        lines += ["", f"note: {result['note']}"]
    for run in runs:
        lines += ["", f"memory {run['mode']}:" if run["mode"] != "memory text" else "memory text:"]
        for answer in run["answers"]:
            mark = "recalled" if answer["recalled"] else "missed  "
            summary = "  (in the story so far)" if answer["in_summary"] else ""
            reply = " ".join(answer["reply"].split())
            lines.append(
                f"  {mark} {answer['question']} [{answer['answer']}]{summary}: "
                f"{reply[:80]}{'...' if len(reply) > 80 else ''}"
            )
    return "\n".join(lines)
