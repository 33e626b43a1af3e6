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

from game import lore
from game.backends.base import Backend, GenerationRequest, GenerationStats, ProgressCallback
from game.choices import (
    are_near_duplicates,
    distinct_count,
    narrative_before_options,
    parse_reply,
    trim_to_sentence,
)
from game.grammar import OPTIONS_LEAD, options_grammar, reply_grammar
from game.lore import lore_text
from game.memory import (
    DEFAULT_SUMMARY_BUDGET,
    StoryMemory,
    Summary,
    memory_text,
    note_text,
    summary_request,
    summary_text,
)
from game.prompt import PromptFormat, render
from game.scenario import LoreEntry, Sampling, Scenario, render_system_prompt
from game.streaming import StopScanner
from game.transcript import (
    Exchange,
    Segment,
    cut_to_tokens,
    fit_window,
    make_segment,
    open_model_tokens,
    reply_segment,
    tokenize_pieces,
    tokens_for_prefix,
)

log = logging.getLogger(__name__)

DEFAULT_SAMPLING = Sampling(
    temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=300
)

ChoiceMode = Literal["guided", "free"]
# Option blocks written after the first pass: for a missing block, or options that repeat.
MAX_OPTION_PASSES = 3


# An option pass with less room than this could not write one option line.
MIN_OPTION_PASS_TOKENS = 8

# Tokens the written lead between narrative and options ("\n\n", or "\n\n- ") may take.
LEAD_ALLOWANCE = 4


def option_reserve(count: int, max_tokens: int) -> int:
    """Tokens kept back from the narrative for an option block of ``count`` lines: enough for
    lines of about 100 characters, but never more than half of the reply."""
    return min(count * 32 + 8, max_tokens // 2)


@dataclass(frozen=True)
class SessionState:
    """A session's mutable state at one moment (see :meth:`Session.checkpoint`)."""

    exchanges: list[Exchange]
    undone: list[Exchange]
    window_start: int
    generations: int
    memory: StoryMemory


@dataclass(frozen=True)
class PromptPart:
    """One segment of a prompt, for the context view: what it is and what it costs."""

    kind: str  # system, memory, summary, exchange, lore, note, action, reply
    label: str
    tokens: int
    text: str


@dataclass(frozen=True)
class SummaryJob:
    """A summary to write: the prompt's segments, and how many exchanges it will cover."""

    through: int
    old: Summary | None
    segments: list[tuple[int, ...]]
    max_tokens: int


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


class Session:
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
        self.headroom = self.budget // 4 if headroom is None else headroom
        if len(self.system) + len(self._model_open) + 8 > self.budget:
            raise SessionError(
                f"the system prompt takes {len(self.system)} tokens, too many for a context of "
                f"{backend.n_ctx} with {self.max_tokens} reserved for replies; raise n_ctx"
            )
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

    def kept_exchanges(self) -> list[Exchange]:
        """The exchanges inside the window."""
        return self.exchanges[self.window_start :]

    def context_tokens(self) -> int:
        """Tokens the current window holds (pinned segments and kept exchanges)."""
        pinned = sum(len(segment) for segment in self.pinned_segments())
        return pinned + sum(ex.token_count for ex in self.kept_exchanges())

    # -- memory ----------------------------------------------------------------------------------

    @property
    def summary_budget(self) -> int:
        return self.scenario.summary_budget or DEFAULT_SUMMARY_BUDGET

    def _system_segment(self, kind: str, text: str) -> Segment | None:
        """A system segment of ``text`` (memoized: the same text gives the same tokens)."""
        if not text:
            return None
        key = (kind, text)
        segment = self._segments.get(key)
        if segment is None:
            if len(self._segments) > 64:
                self._segments.clear()
            segment = self._segments[key] = make_segment(self.backend, self.format, "system", text)
        return segment

    def pinned_parts(self, window_start: int | None = None) -> list[tuple[str, Segment]]:
        """The segments every prompt starts with, by kind: the system prompt, the memory, and
        the story so far for a window starting at ``window_start`` (the current one by
        default)."""
        start = self.window_start if window_start is None else window_start
        parts: list[tuple[str, Segment]] = [("system", self.system)]
        memory = self._system_segment("memory", memory_text(self.memory.memory))
        if memory is not None:
            parts.append(("memory", memory))
        summary = self._system_segment("summary", summary_text(self.memory.active(start)))
        if summary is not None:
            parts.append(("summary", summary))
        return parts

    def pinned_segments(self, window_start: int | None = None) -> list[Segment]:
        """The segments of :meth:`pinned_parts`."""
        return [segment for _, segment in self.pinned_parts(window_start)]

    def _pinned_reserve(self, window_start: int) -> int:
        """Tokens the window keeps for the pinned segments when it starts at
        ``window_start``. Once exchanges have left the window (with summaries on) that is the
        summary's whole budget (a quarter of the prompt at most), so that a summary written
        later does not make the window slide again."""
        parts = self.pinned_parts(window_start)
        reserve = sum(len(segment) for _, segment in parts)
        if self.memory.auto_summary and window_start > 0:
            written = sum(len(segment) for kind, segment in parts if kind == "summary")
            wanted = min(self.summary_budget + 16, self.budget // 4)
            reserve += max(wanted - written, 0)
        return reserve

    def _fit(self, pending_tokens: int) -> int:
        """Where the window starts for a turn whose new segments take ``pending_tokens``."""

        def fit(reserve: int) -> int:
            return fit_window(
                system_tokens=reserve,
                exchange_tokens=[exchange.token_count for exchange in self.exchanges],
                pending_tokens=pending_tokens,
                budget=self.budget,
                start=self.window_start,
                headroom=self.headroom,
            )

        start = fit(self._pinned_reserve(self.window_start))
        # A first slide reserves room for the summary to come: fit again with it, so that the
        # slide frees its headroom beyond the reserve too.
        reserve = self._pinned_reserve(start)
        if reserve > self._pinned_reserve(self.window_start):
            start = fit(reserve)
        return start

    def note_segment(self) -> Segment | None:
        """The author's note's segment, or None when there is no note."""
        return self._system_segment("note", note_text(self.memory.note))

    @property
    def summary_pending(self) -> bool:
        """Whether exchanges have left the window that no summary covers yet (and summaries
        are on)."""
        if not self.memory.auto_summary:
            return False
        active = self.memory.active(self.window_start)
        return self.window_start > (active.through if active else 0)

    def summary_job(self) -> SummaryJob | None:
        """The summary to write now, or None when none is pending.

        It covers the exchanges that left the window since the active summary, as many of
        them as fit the model's context with the old summary (the rest wait for the next
        job: after a long gap, such as an old save's forgotten exchanges, summaries catch up
        over several idle moments).
        """
        if not self.summary_pending:
            return None
        old = self.memory.active(self.window_start)
        first = old.through if old else 0
        max_tokens = self.summary_budget
        events: list[tuple[str, str]] = []
        user: Segment | None = None
        system: list[int] = []
        for exchange in self.exchanges[first : self.window_start]:
            candidate = [*events, (exchange.player.text, exchange.narrative)]
            request = summary_request(
                self.scenario.title,
                old.text if old else "",
                candidate,
                self.summary_budget,
                self.memory.memory,
            )
            system = self.backend.bos() + tokenize_pieces(
                self.backend, self.format, "system", request.instruction, at_start=True
            )
            room = self.backend.n_ctx - max_tokens - len(system) - len(self._model_open) - 8
            segment = make_segment(self.backend, self.format, "user", request.material)
            if len(segment) > room:
                if events:
                    break
                # One exchange alone is too long: its narration is cut to fit.
                over = len(segment) - room
                narration = cut_to_tokens(
                    self.backend,
                    exchange.narrative,
                    max(len(self.backend.tokenize(exchange.narrative, special=False)) - over, 0),
                )
                candidate = [(exchange.player.text[:500], narration)]
                request = summary_request(
                    self.scenario.title,
                    old.text if old else "",
                    candidate,
                    self.summary_budget,
                    self.memory.memory,
                )
                segment = make_segment(self.backend, self.format, "user", request.material)
            events, user = candidate, segment
        if user is None:
            return None
        return SummaryJob(
            through=first + len(events),
            old=old,
            segments=[tuple(system), user.tokens, self._model_open],
            max_tokens=max_tokens,
        )

    def apply_summary(self, job: SummaryJob, text: str) -> bool:
        """Keep a written summary; False (nothing kept) when the game moved on so that the
        job no longer fits it, or the text is empty."""
        if not text.strip() or job.through > len(self.exchanges):
            return False
        if self.memory.active(self.window_start) != job.old:
            return False
        self.memory.add(Summary(job.through, text.strip()))
        return True

    def memory_problem(self, kind: str, text: str) -> str | None:
        """Why ``text`` cannot be this game's ``kind`` (memory, note or summary) in this
        context, as one line; None when it can. Each may take a share of the prompt: the
        memory a quarter, the note an eighth, the story so far its reserve."""
        render = {"memory": memory_text, "note": note_text}
        rendered = render[kind](text) if kind in render else summary_text(Summary(0, text))
        if not rendered:
            return None
        limit = {
            "memory": self.budget // 4,
            "note": self.budget // 8,
            "summary": min(self.summary_budget + 16, self.budget // 4),
        }[kind]
        tokens = len(make_segment(self.backend, self.format, "system", rendered))
        if tokens <= limit:
            return None
        return (
            f"the {kind} takes {tokens} tokens; at most {limit} fit a context of "
            f"{self.backend.n_ctx}: shorten it, or raise n_ctx"
        )

    def replace_summary(self, text: str) -> None:
        """Put the player's own text in place of the story so far (covering the exchanges
        that left the window); "" removes it."""
        self.memory.forget_after(self.window_start)
        self.memory.summaries = [
            old for old in self.memory.summaries if old.through < self.window_start
        ]
        if text.strip():
            self.memory.add(Summary(self.window_start, text.strip()))

    def window_segments(self) -> list[Sequence[int]]:
        """The prompt as the window stands, up to the end of the last exchange: what the next
        turn's prompt starts with (for a backend to prepare while the player reads)."""
        history: list[Sequence[int]] = [seg.tokens for seg in self.pinned_segments()]
        for exchange in self.kept_exchanges():
            history += [exchange.player.tokens, exchange.reply.tokens]
        return history

    def context_view(self, action: str | None = None) -> list[PromptPart]:
        """The prompt of the next turn segment by segment, as the model will read it (before
        any slide that turn would need); with ``action``, its lore, note and action too."""
        labels = {"system": "system prompt", "memory": "memory", "summary": "story so far"}
        parts = [
            PromptPart(kind, labels[kind], len(segment), segment.text)
            for kind, segment in self.pinned_parts()
        ]
        for index, exchange in enumerate(self.kept_exchanges(), start=self.window_start + 1):
            parts.append(
                PromptPart("exchange", f"turn {index}", exchange.token_count, exchange.player.text)
            )
        if action is not None:
            entries = self._lore_for(action)
            if entries:
                lore_segment = make_segment(self.backend, self.format, "system", lore_text(entries))
                parts.append(PromptPart("lore", "lore", len(lore_segment), lore_segment.text))
        note = self.note_segment()
        if note is not None:
            parts.append(PromptPart("note", "author's note", len(note), note.text))
        if action is not None:
            player = make_segment(self.backend, self.format, "user", action)
            parts.append(PromptPart("action", "your action", len(player), action))
        return parts

    def prompt_text(self, action: str | None = None) -> str:
        """The text of the window as a prompt; with ``action``, as the next turn would send it
        (its triggered lore and the author's note included; before any slide that turn would
        need)."""
        pinned = self.pinned_segments()
        turns: list[tuple[str, str]] = [("system", segment.text) for segment in pinned[1:]]
        for exchange in self.kept_exchanges():
            turns += [("user", exchange.player.text), ("model", exchange.reply.text)]
        if action is not None:
            entries = self._lore_for(action)
            if entries:
                turns.append(("system", lore_text(entries)))
            note = self.note_segment()
            if note is not None:
                turns.append(("system", note.text))
            turns.append(("user", action))
        return render(self.format.name, self.system_prompt, turns)

    def _lore_for(self, action: str) -> list[LoreEntry]:
        """The triggered lore for a turn: keywords in the action or the last reply."""
        if not self.scenario.lore:
            return []
        last = self.exchanges[-1].reply.text if self.exchanges else ""
        return lore.select(
            self.scenario.lore,
            f"{action}\n{last}",
            self.scenario.lore_budget,
            lambda text: len(self.backend.tokenize(text, special=False)),
        )

    def _player_segment(self, action: str, notices: list[str], *, reserved: int = 0) -> Segment:
        segment = make_segment(self.backend, self.format, "user", action)
        room = (
            self.budget - self._pinned_reserve(self.window_start) - len(self._model_open) - reserved
        )
        if len(segment) <= room:
            return segment
        markers = len(make_segment(self.backend, self.format, "user", ""))
        cut = cut_to_tokens(self.backend, action, room - markers)
        notices.append(
            f"Your action was too long for the context window and was cut to "
            f"{len(cut)} of {len(action)} characters."
        )
        return make_segment(self.backend, self.format, "user", cut)

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
        entries = self._lore_for(action)
        # Triggered lore is a system segment just before the new player turn, not part of the
        # pinned system prompt: the cached prompt before it stays valid, and next turn its span
        # is dropped from the cache like any segment that left the prompt.
        lore_segment = (
            make_segment(self.backend, self.format, "system", lore_text(entries))
            if entries
            else None
        )
        lore_tokens = len(lore_segment) if lore_segment else 0
        # The author's note sits just before the action, like lore: only its own tokens are
        # read each turn, and next turn its span is dropped from the cache.
        note = self.note_segment()
        if note is not None and len(note) + lore_tokens > self.budget // 4:
            notices.append("The author's note was left out this turn: it is too long.")
            note = None
        extra_tokens = lore_tokens + (len(note) if note else 0)
        player = self._player_segment(action, notices, reserved=extra_tokens)
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

        reply = _ReplyWriter(self, history, on_text, on_rewind, should_stop, on_progress)
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


class _ReplyWriter:
    """Writes one reply: a first pass, then option-block passes while the options fall short.

    The first pass leaves :func:`option_reserve` tokens unused, so the reply as kept (narrative,
    lead and block) never has more than ``max_tokens`` tokens. When its reply has no complete
    block of distinct options (guided mode), or no options at all (free mode, asked once), the
    reply is cut back to its narrative and continued with the option block alone: the prompt and
    the narrative are already in the model's cache, so only the block is generated.
    """

    def __init__(
        self,
        session: Session,
        history: list[Sequence[int]],
        on_text: Callable[[str], None] | None,
        on_rewind: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None,
        on_progress: ProgressCallback | None = None,
    ):
        self.session = session
        self.history = history
        # Only the first pass reads the prompt; later passes find it in the cache.
        self.on_progress = on_progress
        self.on_text = on_text
        self.on_rewind = on_rewind
        self.should_stop = should_stop
        self.count = session.scenario.choices
        self.guided = session.choice_mode == "guided"
        self.text = ""
        self.tokens: list[int] | None = []
        self.cut_short = False
        self.option_passes = 0
        self._stats: list[GenerationStats] = []

    def _pass(
        self, lead: str, lead_tokens: list[int], request: GenerationRequest
    ) -> tuple[str, list[int] | None, bool, bool]:
        """Generate after ``lead`` (reply text already written).

        Returns:
            The new text; its token ids (None when a stop string trimmed them); whether the
            player stopped it; whether it was cut short (stopped, or out of tokens).
        """
        session = self.session
        scanner = StopScanner(session.format.stop)
        generated: list[int] = []
        cancelled = False

        def on_token(token: int, piece: str) -> bool:
            nonlocal cancelled
            generated.append(token)
            shown = scanner.feed(piece)
            if shown and self.on_text is not None:
                self.on_text(shown)
            if scanner.stopped:
                return False
            if self.should_stop is not None and self.should_stop():
                cancelled = True
                return False
            return True

        segments = [*self.history, (*session._model_open, *lead_tokens)]
        on_progress, self.on_progress = self.on_progress, None
        # Passed only when asked for, so that a backend (or a test's spy) that does not report
        # progress is called exactly as before.
        extra = {} if on_progress is None else {"on_progress": on_progress}
        stats = session.backend.generate(segments, request, on_token, **extra)
        self._stats.append(stats)
        if not scanner.stopped and not cancelled:
            tail = scanner.flush()
            if tail and self.on_text is not None:
                self.on_text(tail)
        # Trimmed text (a stop string, or a held-back part of one on cancel) no longer matches
        # the ids the model generated.
        exact = not scanner.stopped and not scanner.held
        cut_short = cancelled or stats.finish_reason == "length"
        return scanner.text, (generated if exact else None), cancelled, cut_short

    def _score(self, text: str) -> int:
        choices = parse_reply(text).choices
        if self.guided and len(choices) != self.count:
            return 0
        return distinct_count(choices)

    def write(self) -> None:
        session = self.session
        if session.fixed_reply_tokens is not None:
            request = session._request(session.fixed_reply_tokens, None, ban_end=True)
            self.text, self.tokens, _, self.cut_short = self._pass("", [], request)
            return
        reserve = option_reserve(self.count, session.max_tokens)
        first_max = max(session.max_tokens - reserve - LEAD_ALLOWANCE, 1)
        grammar = reply_grammar(self.count) if self.guided else None
        request = session._request(first_max, grammar)
        self.text, self.tokens, cancelled, out_of_tokens = self._pass("", [], request)
        self.cut_short = out_of_tokens
        if cancelled:
            return
        best = self._score(self.text)
        enough = best == self.count if self.guided else best > 0
        if enough:
            return
        narrative = narrative_before_options(self.text) if self.guided else self.text.rstrip()
        if out_of_tokens:
            narrative = trim_to_sentence(narrative)
        base = narrative + (OPTIONS_LEAD if self.guided else OPTIONS_LEAD + "- ")
        partial = self.text[len(base) :] if self.guided and self.text.startswith(base) else ""
        kept = self._distinct_lines(partial)
        for attempt in range(MAX_OPTION_PASSES if self.guided else 1):
            # Options already distinct stay; only the rest of the block is written again.
            lead = base + "".join(f"{line}\n" for line in kept)
            lead_tokens = self._tokens_for(lead)
            # The reply as kept (lead and block) stays within max_tokens, so the prompt plus
            # this pass never outgrows the context the window left for the reply.
            room = min(reserve, session.max_tokens - len(lead_tokens))
            if room < MIN_OPTION_PASS_TOKENS:
                break
            if self.on_rewind is not None:
                self.on_rewind(lead)
            self.option_passes += 1
            grammar = options_grammar(self.count - len(kept)) if self.guided else None
            request = session._request(room, grammar, retry=attempt)
            block, block_tokens, cancelled, cut_short = self._pass(lead, lead_tokens, request)
            score = self._score(lead + block)
            if score > best or cancelled:
                best = score
                self.cut_short = cut_short
                self.text = lead + block
                self.tokens = None if block_tokens is None else lead_tokens + block_tokens
            if cancelled or best == self.count:
                break
            kept = self._distinct_lines(self.text[len(base) :])
        if self.on_rewind is not None:
            self.on_rewind(self.text)

    def _tokens_for(self, text: str) -> list[int]:
        """Ids that spell ``text``, reusing those of the reply so far where they fit."""
        backend = self.session.backend
        if self.tokens is None:
            return backend.tokenize(text, special=False)
        return tokens_for_prefix(backend, self.tokens, text)

    def _distinct_lines(self, block: str) -> list[str]:
        """The leading complete option lines of ``block`` that repeat no earlier one (fewer
        than all). A last line without its newline may have been cut off, so it never counts."""
        kept: list[str] = []
        complete = block.split("\n")[:-1]
        for line in complete[: self.count - 1]:
            if not line.startswith("- ") or any(
                are_near_duplicates(line[2:], other[2:]) for other in kept
            ):
                break
            kept.append(line)
        return kept

    def stats(self) -> GenerationStats:
        """The passes' costs added up; time to first token is the first pass's, and decoding
        time is each pass's time after its first token."""
        first, last = self._stats[0], self._stats[-1]
        return GenerationStats(
            prompt_tokens=first.prompt_tokens,
            evaluated_tokens=sum(stats.evaluated_tokens for stats in self._stats),
            generated_tokens=sum(stats.generated_tokens for stats in self._stats),
            ttft_s=first.ttft_s,
            total_s=sum(stats.total_s for stats in self._stats),
            finish_reason=last.finish_reason,
            decode_s=sum(stats.decode_seconds for stats in self._stats),
            passes=sum(stats.passes for stats in self._stats),
            reading_s=first.reading_s,
            stored_tokens=first.stored_tokens,
        )
