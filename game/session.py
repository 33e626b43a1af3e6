"""The turn manager: one game of one scenario against one backend. No UI and no I/O of its own.

A turn builds the prompt from token-counted segments (the pinned system prompt, the exchanges
that fit the window, the new player action, the model's open prefix), streams the reply through
a stop-string scanner, and keeps the exchange with the token ids the model generated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from game.backends.base import Backend, GenerationRequest, GenerationStats, ProgressCallback
from game.choices import (
    parse_reply,
)
from game.memory import (
    StoryMemory,
)
from game.prompt import PromptFormat
from game.reply_writer import MAX_OPTION_PASSES, ReplyWriter
from game.scenario import Sampling, Scenario, render_system_prompt
from game.story_prompt import PromptPart, StoryPrompt, SummaryJob
from game.transcript import (
    Exchange,
    Segment,
    make_segment,
    open_model_tokens,
    reply_segment,
    tokenize_pieces,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SAMPLING",
    "MAX_OPTION_PASSES",
    "ChoiceMode",
    "PromptPart",
    "Session",
    "SessionError",
    "SessionState",
    "SummaryJob",
    "TurnResult",
]

DEFAULT_SAMPLING = Sampling(
    temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=300
)

ChoiceMode = Literal["guided", "free"]


@dataclass(frozen=True)
class SessionState:
    """A session's mutable state at one moment (see :meth:`Session.checkpoint`)."""

    exchanges: list[Exchange]
    undone: list[Exchange]
    window_start: int
    generations: int
    memory: StoryMemory


class SessionError(Exception):
    """The game cannot go on as asked (nothing to undo, a window too small for the system
    prompt). The message is one line for the player."""


@dataclass(frozen=True)
class TurnResult:
    """What one turn produced, for the UI, the JSON output and the benchmarks."""

    turn: int
    action: str
    narrative: str
    choices: list[str]
    cut_short: bool
    stats: GenerationStats
    window_start: int
    slid: bool
    notices: list[str] = field(default_factory=list)
    option_passes: int = 0
    lore: list[str] = field(default_factory=list)
    segments: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """The turn as the JSON object ``play --headless --json`` prints."""
        return {
            "turn": self.turn,
            "action": self.action,
            "narrative": self.narrative,
            "choices": self.choices,
            "cut_short": self.cut_short,
            "prompt_tokens": self.stats.prompt_tokens,
            "evaluated_tokens": self.stats.evaluated_tokens,
            "generated_tokens": self.stats.generated_tokens,
            "ttft_s": round(self.stats.ttft_s, 4),
            "reading_s": round(self.stats.reading_s, 4),
            "stored_tokens": self.stats.stored_tokens,
            "tokens_per_s": round(self.stats.tokens_per_s, 2),
            "finish_reason": self.stats.finish_reason,
            "window_start": self.window_start,
            "window_slid": self.slid,
            "option_passes": self.option_passes,
            "lore": self.lore,
            "segments": self.segments,
            "notices": self.notices,
        }


class Session(StoryPrompt):
    """One game in progress.

    Args:
        scenario: The scenario being played.
        backend: The model.
        fmt: The prompt format the model expects.
        sampling: Sampling settings; the scenario's overrides apply on top.
        choice_mode: ``guided`` makes the model end each reply with the scenario's number of
            options (a grammar); ``free`` parses what comes. None takes the scenario's default.
        seed: Base seed; the Nth generation of the session samples with ``seed + N``, so a
            replay is reproducible and a retry does not repeat the reply it replaces.
        headroom: Tokens to free beyond the overflow when the window slides; default a quarter
            of the prompt budget.
        fixed_reply_tokens: Make every reply exactly this long, in one free pass with the
            model's end token masked (for benchmarks that need the same work each turn).
        summaries: Whether the story-so-far is summarized as exchanges leave the window (the
            window then keeps room for it; :class:`GameController` has it written).
    """

    def __init__(
        self,
        scenario: Scenario,
        backend: Backend,
        fmt: PromptFormat,
        *,
        sampling: Sampling | None = None,
        choice_mode: ChoiceMode | None = None,
        seed: int | None = None,
        headroom: int | None = None,
        fixed_reply_tokens: int | None = None,
        summaries: bool = True,
    ):
        self.scenario = scenario
        self.backend = backend
        self.format = fmt
        self.sampling = scenario.sampling.merged_over(
            (sampling or Sampling()).merged_over(DEFAULT_SAMPLING)
        )
        self.seed = seed
        self.fixed_reply_tokens = fixed_reply_tokens
        self.choice_mode: ChoiceMode = choice_mode or scenario.choice_mode
        if self.choice_mode == "guided" and not backend.supports_grammar:
            log.warning("%s cannot follow a grammar: choices are parsed freely", backend.name)
            self.choice_mode = "free"
        self.system_prompt = render_system_prompt(scenario)
        system_tokens = backend.bos() + tokenize_pieces(
            backend, fmt, "system", self.system_prompt, at_start=True
        )
        self.system = Segment("system", self.system_prompt, tuple(system_tokens))
        self._model_open = tuple(open_model_tokens(backend, fmt))
        self.exchanges: list[Exchange] = []
        # Exchanges taken back by undo, newest last; redo puts them back, a new turn clears them.
        self.undone: list[Exchange] = []
        self.window_start = 0
        self.generations = 0
        self.memory = StoryMemory(
            memory=scenario.memory or "", note=scenario.authors_note or "", auto_summary=summaries
        )
        self._segments: dict[tuple[str, str], Segment] = {}
        self.startup_notices: list[str] = []
        self.headroom = self.budget // 4 if headroom is None else headroom
        if len(self.system) + len(self._model_open) + 8 > self.budget:
            raise SessionError(
                f"the system prompt takes {len(self.system)} tokens, too many for a context of "
                f"{backend.n_ctx} with {self.max_tokens} reserved for replies; raise n_ctx"
            )
        self.check_memory_fits()
        # A written intro is the model's first turn, answering the opening: the story starts
        # from it without generating, and the model goes on in its voice.
        self.intro_turns = 0
        if scenario.intro is not None:
            self.exchanges.append(self._intro_exchange())
            self.intro_turns = 1

    def _intro_exchange(self) -> Exchange:
        intro = self.scenario.intro
        assert intro is not None
        text = intro.text
        if intro.choices:
            text += "\n\n" + "\n".join(f"- {choice}" for choice in intro.choices)
        player = make_segment(self.backend, self.format, "user", self.scenario.opening)
        reply = reply_segment(self.backend, self.format, text, None)
        return Exchange(player, reply, intro.text, list(intro.choices), window_start=0)

    @property
    def max_tokens(self) -> int:
        """The most tokens one reply may have; this much of the context is kept free for it."""
        assert self.sampling.max_tokens is not None
        return self.sampling.max_tokens

    @property
    def budget(self) -> int:
        """The most tokens a prompt may have."""
        return self.backend.n_ctx - self.max_tokens

    @property
    def turn(self) -> int:
        """Finished exchanges so far."""
        return len(self.exchanges)

    @property
    def choices(self) -> list[str]:
        """The options the last reply offered."""
        return self.exchanges[-1].choices if self.exchanges else []

    def play(
        self,
        action: str,
        *,
        on_text: Callable[[str], None] | None = None,
        on_rewind: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TurnResult:
        """Play one turn.

        Args:
            action: What the player did (a choice's text or free text).
            on_text: Called with each piece of reply text as it becomes safe to show.
            on_rewind: Called with the reply as it now stands when text already shown is taken
                back (an option block written again); the next ``on_text`` pieces follow it.
            should_stop: Polled after each token; True stops the reply, which is kept as written
                and marked cut short.
            on_progress: Hears how far the model has read the prompt; returning False abandons
                the turn (GenerationCancelled) before its reply begins.

        Raises:
            BackendError: when the model fails; the session is unchanged. So it is after any
            other exception (a bug, KeyboardInterrupt): a failed turn leaves no trace, not even
            in the seed counter.
        """
        state = self.checkpoint()
        try:
            return self._play(action, on_text, on_rewind, should_stop, on_progress)
        except BaseException:
            self.rollback(state)
            raise

    def _play(
        self,
        action: str,
        on_text: Callable[[str], None] | None,
        on_rewind: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None,
        on_progress: ProgressCallback | None,
    ) -> TurnResult:
        notices: list[str] = []
        # A new turn after an undo: summaries of exchanges that are gone go too.
        self.memory.forget_after(len(self.exchanges))
        player, lore_segment, note, entries = self._turn_segments(action, notices)
        lore_tokens = len(lore_segment) if lore_segment else 0
        extra_tokens = lore_tokens + (len(note) if note else 0)
        start = self._fit(extra_tokens + len(player) + len(self._model_open))
        slid = start != self.window_start
        if slid:
            log.info("window slides: exchanges %d..%d leave", self.window_start, start - 1)
        segments = dict.fromkeys(("system", "memory", "summary", "exchanges"), 0)
        history: list[Sequence[int]] = []
        for kind, segment in self.pinned_parts(start):
            history.append(segment.tokens)
            segments[kind] = len(segment)
        for exchange in self.exchanges[start:]:
            history += [exchange.player.tokens, exchange.reply.tokens]
            segments["exchanges"] += exchange.token_count
        segments["lore"] = lore_tokens
        if lore_segment is not None:
            history.append(lore_segment.tokens)
        segments["note"] = len(note) if note else 0
        if note is not None:
            history.append(note.tokens)
        segments["action"] = len(player)
        history.append(player.tokens)

        reply = ReplyWriter(self, history, on_text, on_rewind, should_stop, on_progress)
        reply.write()
        segment = reply_segment(self.backend, self.format, reply.text, reply.tokens)
        parsed = parse_reply(reply.text)
        self.exchanges.append(
            Exchange(player, segment, parsed.narrative, parsed.choices, reply.cut_short, start)
        )
        self.undone.clear()
        self.window_start = start
        return TurnResult(
            turn=len(self.exchanges),
            action=player.text,
            narrative=parsed.narrative,
            choices=parsed.choices,
            cut_short=reply.cut_short,
            stats=reply.stats(),
            window_start=start,
            slid=slid,
            notices=notices,
            option_passes=reply.option_passes,
            lore=[entry.keys[0] if entry.keys else entry.text[:20] for entry in entries],
            segments=segments,
        )

    def _request(
        self, max_tokens: int, grammar: str | None, *, ban_end: bool = False, retry: int = 0
    ) -> GenerationRequest:
        """The next generation's request; a ``retry`` > 0 samples hotter, so that writing an
        option block again does not write the same block."""
        seed = None if self.seed is None else self.seed + self.generations
        self.generations += 1
        sampling = self.sampling
        if retry:
            hotter = max(sampling.temperature or 0.0, 0.7) + 0.2 * retry
            sampling = sampling.model_copy(update={"temperature": hotter})
        return GenerationRequest(
            max_tokens=max_tokens,
            sampling=sampling,
            seed=seed,
            grammar=grammar,
            ban_end=ban_end,
        )

    def checkpoint(self) -> SessionState:
        """The game's state as it stands, for :meth:`rollback`."""
        return SessionState(
            list(self.exchanges),
            list(self.undone),
            self.window_start,
            self.generations,
            self.memory.copy(),
        )

    def rollback(self, state: SessionState) -> None:
        """Put the game back exactly as it was at :meth:`checkpoint`."""
        self.exchanges = list(state.exchanges)
        self.undone = list(state.undone)
        self.window_start = state.window_start
        self.generations = state.generations
        self.memory = state.memory.copy()

    def _window_before(self, count: int) -> int:
        """Where the window started when the first ``count`` exchanges were all there was."""
        if count == 0:
            return 0
        recorded = self.exchanges[count - 1].window_start
        return min(self.window_start if recorded is None else recorded, count)

    def undo(self) -> Exchange:
        """Take back the last exchange and return it; :meth:`redo` puts it back.

        The window goes back to where it was before that turn: exchanges a slide dropped come
        back into the prompt when they fit again. A written intro cannot be taken back.
        """
        if len(self.exchanges) <= self.intro_turns:
            raise SessionError("there is no turn to undo")
        exchange = self.exchanges.pop()
        self.undone.append(exchange)
        self.window_start = self._window_before(len(self.exchanges))
        return exchange

    def redo(self) -> Exchange:
        """Put back the exchange last taken back by :meth:`undo` and return it."""
        if not self.undone:
            raise SessionError("there is no turn to redo")
        exchange = self.undone.pop()
        self.exchanges.append(exchange)
        if exchange.window_start is not None:
            self.window_start = min(exchange.window_start, len(self.exchanges))
        return exchange

    def retry(self, **kwargs: object) -> TurnResult:
        """Generate the last reply again for the same action; see :meth:`play`. The replaced
        reply is gone (not redoable); when the turn fails, for whatever reason, it stays."""
        if len(self.exchanges) <= self.intro_turns:
            raise SessionError("there is no reply to retry")
        state = self.checkpoint()
        last = self.exchanges.pop()
        self.window_start = self._window_before(len(self.exchanges))
        try:
            return self.play(last.player.text, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            self.rollback(state)
            raise

    def restore(self, exchanges: list[Exchange], undone: list[Exchange], window_start: int) -> None:
        """Put a saved game's state back (see :mod:`game.saves`)."""
        self.exchanges = list(exchanges)
        self.undone = list(undone)
        self.window_start = min(max(window_start, 0), len(self.exchanges))
