"""Prompts for the in-place insertion tests on the real llama.cpp backend, and how a reply's
deviation from a fresh evaluation is measured (see tests/test_memory_llama.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np

from game.backends.base import GenerationRequest
from game.backends.llamacpp import LlamaCppBackend
from game.memory import SUMMARY_HEADER
from game.prompt import PromptFormat
from game.session import DEFAULT_SAMPLING
from game.transcript import make_segment, open_model_tokens, tokenize_pieces

GREEDY = DEFAULT_SAMPLING.model_copy(update={"temperature": 0.0, "repeat_penalty": 1.0})
# Fixed-length greedy replies: end tokens masked, so two replies always compare in full.
REPLY_TOKENS = 16

# (system prompt, old summary, dropped exchanges, kept exchanges, new summary, action)
Story = tuple[str, str, list[tuple[str, str]], list[tuple[str, str]], str, str]

STORIES: list[Story] = [
    (
        "You narrate a text adventure in a ruined castle. Write two short paragraphs.",
        "The hero arrived at the castle gate at dusk.",
        [
            ("I greet the guard.", "The old guard, Tomas, nods and asks your name."),
            ("I tell him my name.", "Tomas gives you a silver key and warns you of the red door."),
        ],
        [
            ("I walk into the hall.", "The hall is dark. A red door stands to the north."),
            ("I light my lamp.", "Shadows flee. A blue door to the east is ajar, and cold."),
        ],
        "The hero reached the castle at dusk. The guard Tomas gave the hero a silver key and "
        "warned about the red door.",
        "I ask myself who gave me the key.",
    ),
    (
        "You are the narrator of a detective story set in a rainy harbour town.",
        "Inspector Vale was called to the harbour after a ship's captain vanished.",
        [
            ("I search the captain's cabin.", "You find a torn map and a brass compass."),
            ("I read the map.", "The map marks a cove called Gull Point with a red cross."),
            ("I question the first mate.", "The mate, Ines, says the captain feared a debt."),
        ],
        [
            ("I walk to the tavern.", "The tavern is loud. A man in grey watches you closely."),
            ("I sit near the man in grey.", "He slides a note across the table: 'Midnight.'"),
        ],
        "Inspector Vale is looking for a missing captain. His cabin held a map to Gull Point "
        "and a brass compass; the first mate Ines says he feared a debt.",
        "I think about where the map leads.",
    ),
    (
        "You run a science-fiction adventure aboard the starship Meridian.",
        "Engineer Sato woke from cryosleep to alarms.",
        [
            ("I check the reactor.", "The reactor runs at 40 percent and a coolant line leaks."),
            ("I seal the leak.", "You seal it with foam. The ship's AI, called Wren, thanks you."),
        ],
        [
            ("I ask Wren where the crew is.", "Wren says the crew left in the shuttle days ago."),
            ("I go to the bridge.", "The bridge is empty. A star chart glows on the console."),
        ],
        "Engineer Sato woke to alarms, found the reactor at 40 percent with a coolant leak and "
        "sealed it; the AI Wren helps.",
        "I ask Wren how the reactor is doing.",
    ),
    (
        "You tell a fairy tale in a dark forest. Keep it gentle.",
        "Mira left her village to find the healing herb for her brother.",
        [
            ("I follow the river.", "The river leads to a hut where an owl named Pell lives."),
            ("I ask Pell for help.", "Pell says the herb grows under the three-headed oak."),
        ],
        [
            ("I walk deeper into the forest.", "The trees grow tall and the path narrows."),
            ("I listen.", "You hear bells far away, and a fox watching from the ferns."),
        ],
        "Mira seeks a healing herb for her brother. The owl Pell told her it grows under the "
        "three-headed oak.",
        "I ask the fox where the oak is.",
    ),
]


@dataclass(frozen=True)
class Case:
    """One story as token segments."""

    system: tuple[int, ...]
    old: tuple[int, ...]
    dropped: list[tuple[int, ...]]
    kept: list[tuple[int, ...]]
    new: tuple[int, ...]
    action: tuple[int, ...]

    @property
    def before(self) -> list[Sequence[int]]:
        """The window before the slide: system, old summary, every exchange."""
        return [self.system, self.old, *self.dropped, *self.kept]

    @property
    def inserted(self) -> list[Sequence[int]]:
        """The window after the summary: the new one in place of the old and the dropped."""
        return [self.system, self.new, *self.kept]

    @property
    def shifted(self) -> list[Sequence[int]]:
        """The window after a plain slide: the dropped exchanges gone, the old summary kept."""
        return [self.system, self.old, *self.kept]


def build_case(
    backend: LlamaCppBackend, fmt: PromptFormat, story: Story, action: str | None = None
) -> Case:
    """The story's segments; ``action`` in place of its own."""
    system_text, old, dropped, kept, new, own_action = story
    action = own_action if action is None else action
    system = tuple(
        backend.bos() + tokenize_pieces(backend, fmt, "system", system_text, at_start=True)
    )

    def summary(text: str) -> tuple[int, ...]:
        return make_segment(backend, fmt, "system", f"{SUMMARY_HEADER}\n{text}").tokens

    def exchanges(pairs: list[tuple[str, str]]) -> list[tuple[int, ...]]:
        return [
            make_segment(backend, fmt, "user", player).tokens
            + make_segment(backend, fmt, "model", reply).tokens
            for player, reply in pairs
        ]

    return Case(
        system,
        summary(old),
        exchanges(dropped),
        exchanges(kept),
        summary(new),
        make_segment(backend, fmt, "user", action).tokens + tuple(open_model_tokens(backend, fmt)),
    )


@dataclass(frozen=True)
class Reply:
    tokens: list[int]
    logits: np.ndarray  # the next-token logits after the prompt
    evaluated: int


def reply(backend: LlamaCppBackend, segments: Sequence[Sequence[int]]) -> Reply:
    """A fixed-length greedy reply, with the prompt's next-token logits."""
    tokens: list[int] = []
    captured: list[np.ndarray] = []
    n_vocab = llama_cpp.llama_vocab_n_tokens(backend._llm._model.vocab)

    def on_token(token: int, _piece: str) -> bool:
        if not captured:  # nothing decoded since the prompt's last token: its logits
            pointer = llama_cpp.llama_get_logits_ith(backend._llm._ctx.ctx, -1)
            captured.append(np.ctypeslib.as_array(pointer, shape=(n_vocab,)).copy())
        tokens.append(token)
        return True

    request = GenerationRequest(max_tokens=REPLY_TOKENS, sampling=GREEDY, ban_end=True)
    stats = backend.generate(segments, request, on_token)
    return Reply(tokens, captured[0], stats.evaluated_tokens)


def fresh_reply(backend: LlamaCppBackend, segments: Sequence[Sequence[int]]) -> Reply:
    """The reply when the whole prompt is read from scratch."""
    clear(backend)
    return reply(backend, segments)


def clear(backend: LlamaCppBackend) -> None:
    backend._llm.reset()
    backend._llm._ctx.kv_cache_seq_rm(-1, 0, -1)


def total_variation(first: np.ndarray, second: np.ndarray) -> float:
    """Total variation distance between the softmax distributions of two logit vectors."""

    def softmax(logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits.astype(np.float64) - logits.max())
        return shifted / shifted.sum()

    return float(0.5 * np.abs(softmax(first) - softmax(second)).sum())


def leading_agreement(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens two replies share."""
    same = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        same += 1
    return same


@dataclass(frozen=True)
class Deviation:
    """How far a reply from an edited cache is from a fresh evaluation."""

    tvd: float
    top1: bool
    leading: int

    @staticmethod
    def of(edited: Reply, fresh: Reply) -> Deviation:
        return Deviation(
            total_variation(edited.logits, fresh.logits),
            int(np.argmax(edited.logits)) == int(np.argmax(fresh.logits)),
            leading_agreement(edited.tokens, fresh.tokens),
        )


def measure(backend: LlamaCppBackend, case: Case) -> tuple[Deviation, Deviation, int]:
    """The in-place insertion's and the plain shift's deviation on one case, and how many
    tokens the insertion evaluated in place."""
    clear(backend)
    backend.prepare(case.before)
    prepared = backend.prepare(case.inserted)
    in_place = reply(backend, [*case.inserted, case.action])
    assert in_place.evaluated == len(case.action)  # the kept exchanges were not read again
    in_place_dev = Deviation.of(in_place, fresh_reply(backend, [*case.inserted, case.action]))
    clear(backend)
    backend.prepare(case.before)
    shifted = reply(backend, [*case.shifted, case.action])
    assert shifted.evaluated == len(case.action)
    shift_dev = Deviation.of(shifted, fresh_reply(backend, [*case.shifted, case.action]))
    return in_place_dev, shift_dev, prepared.evaluated_tokens


def summarize(deviations: Sequence[Deviation]) -> dict[str, float]:
    count = len(deviations)
    return {
        "cases": count,
        "tvd_mean": sum(d.tvd for d in deviations) / count,
        "tvd_max": max(d.tvd for d in deviations),
        "top1": sum(d.top1 for d in deviations) / count,
        "leading_mean": sum(d.leading for d in deviations) / count,
        "leading_min": min(d.leading for d in deviations),
        "full": sum(d.leading == REPLY_TOKENS for d in deviations) / count,
    }


def is_close(first: np.ndarray, second: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Logits equal up to float rounding (batch sizes change the order of sums)."""
    scale = max(float(np.abs(second).max()), 1.0)
    return math.isfinite(scale) and float(np.abs(first - second).max()) <= tolerance * scale
