"""The parts of a session's prompt that hold what the story remembers beyond the window: the
pinned memory and story-so-far summary, the author's note, the window's fit around them, the
summary jobs, and the context view. A mixin of :class:`game.session.Session`, kept apart so that
each module has one job; no I/O, no UI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from game import lore
from game.lore import lore_text
from game.memory import (
    DEFAULT_SUMMARY_BUDGET,
    MEMORY_LIMITS,
    StoryMemory,
    Summary,
    clean_summary,
    memory_text,
    note_text,
    summary_request,
    summary_text,
)
from game.prompt import PromptFormat, render
from game.transcript import (
    Exchange,
    Segment,
    cut_to_tokens,
    fit_window,
    make_segment,
    tokenize_pieces,
)

if TYPE_CHECKING:
    from game.backends.base import Backend
    from game.scenario import LoreEntry, Scenario


log = logging.getLogger(__name__)

# Tokens a turn keeps for itself (action, lore, note, the model's prefix) before a summary gets
# room in a small context; and the least room worth a summary at all.
MIN_TURN_TOKENS = 96
MIN_SUMMARY_ROOM = 48


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


class StoryPrompt:
    """What :class:`game.session.Session` gives this mixin, and what it adds."""

    backend: Backend
    format: PromptFormat
    scenario: Scenario
    system: Segment
    system_prompt: str
    memory: StoryMemory
    startup_notices: list[str]
    exchanges: list[Exchange]
    window_start: int
    headroom: int
    _model_open: tuple[int, ...]
    _segments: dict[tuple[str, str], Segment]

    @property
    def budget(self) -> int:
        """The most tokens a prompt may have."""
        raise NotImplementedError

    def kept_exchanges(self) -> list[Exchange]:
        """The exchanges inside the window."""
        return self.exchanges[self.window_start :]

    def context_tokens(self) -> int:
        """Tokens the current window holds (pinned segments and kept exchanges)."""
        pinned = sum(len(segment) for segment in self.pinned_segments())
        return pinned + sum(ex.token_count for ex in self.kept_exchanges())

    def prompt_text(self, action: str | None = None) -> str:
        """The text of the window as a prompt; with ``action``, as the next turn would send it
        (its triggered lore and the author's note included; before any slide that turn would
        need)."""
        pinned = self.pinned_segments()
        turns: list[tuple[str, str]] = [("system", segment.text) for segment in pinned[1:]]
        for exchange in self.kept_exchanges():
            turns += [("user", exchange.player.text), ("model", exchange.reply.text)]
        if action is not None:
            player, lore_segment, note, _ = self._turn_segments(action, [])
            for role, segment in (("system", lore_segment), ("system", note), ("user", player)):
                if segment is not None:
                    turns.append((role, segment.text))
        return render(self.format.name, self.system_prompt, turns)

    def _lore_for(self, action: str, budget: int | None = None) -> list[LoreEntry]:
        """The triggered lore for a turn: keywords in the action or the last reply, within
        ``budget`` tokens (the scenario's lore budget by default)."""
        if not self.scenario.lore:
            return []
        last = self.exchanges[-1].reply.text if self.exchanges else ""
        return lore.select(
            self.scenario.lore,
            f"{action}\n{last}",
            self.scenario.lore_budget if budget is None else budget,
            lambda text: len(self.backend.tokenize(text, special=False)),
        )

    @property
    def summary_budget(self) -> int:
        return self.scenario.summary_budget or DEFAULT_SUMMARY_BUDGET

    def summary_room(self) -> int:
        """Tokens the story-so-far segment may take: the summary's budget (with its header
        and markers), a quarter of the prompt at most, and never so much that a turn would
        have less than :data:`MIN_TURN_TOKENS` left after the system prompt (a small context
        then has no summaries: 0)."""
        pinned = sum(len(part) for kind, part in self.pinned_parts(0) if kind != "summary")
        left = self.budget - pinned - len(self._model_open) - MIN_TURN_TOKENS
        room = min(self.summary_budget + 16, self.budget // 4, left)
        return room if room >= MIN_SUMMARY_ROOM else 0

    def _summary_overhead(self) -> int:
        """Tokens the story-so-far segment takes besides the summary's own."""
        empty = make_segment(self.backend, self.format, "system", summary_text(Summary(0, ".")))
        return len(empty) - len(self.backend.tokenize(".", special=False))

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
        # A memory too big for this context (a save resumed with a smaller n_ctx, a scenario's
        # long default) stays the game's, shown and saved, but out of the prompt.
        if memory is not None and len(memory) <= self.budget // 4:
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
            reserve += max(self.summary_room() - written, 0)
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

    def _free_for_turn(self) -> int:
        """Tokens the turn's own segments (action, lore, note, the model's prefix) may take
        however far the window slides: the budget less the pinned segments as they will be
        once everything has left the window (the summary's reserve included)."""
        pinned = max(
            self._pinned_reserve(self.window_start), self._pinned_reserve(len(self.exchanges))
        )
        return self.budget - pinned - len(self._model_open)

    def _player_segment(self, action: str, notices: list[str], room: int) -> Segment:
        segment = make_segment(self.backend, self.format, "user", action)
        if len(segment) <= room:
            return segment
        markers = len(make_segment(self.backend, self.format, "user", ""))
        cut = cut_to_tokens(self.backend, action, room - markers)
        notices.append(
            f"Your action was too long for the context window and was cut to "
            f"{len(cut)} of {len(action)} characters."
        )
        return make_segment(self.backend, self.format, "user", cut)

    def _turn_segments(
        self, action: str, notices: list[str]
    ) -> tuple[Segment, Segment | None, Segment | None, list[LoreEntry]]:
        """The turn's own segments, within what the pinned ones leave: the action first, then
        triggered lore, then the author's note (each left out when it does not fit)."""
        free = self._free_for_turn()
        player = self._player_segment(action, notices, free)
        left = free - len(player)
        # Triggered lore is a system segment just before the new player turn, not part of the
        # pinned system prompt: the cached prompt before it stays valid, and next turn its span
        # is dropped from the cache like any segment that left the prompt.
        entries = self._lore_for(action, min(self.scenario.lore_budget, max(left - 8, 0)))
        lore_segment = (
            make_segment(self.backend, self.format, "system", lore_text(entries))
            if entries
            else None
        )
        if lore_segment is not None and len(lore_segment) > left:
            log.info("triggered lore left out: %d tokens, %d free", len(lore_segment), left)
            lore_segment, entries = None, []
        left -= len(lore_segment) if lore_segment else 0
        # The author's note sits just before the action, like lore: only its own tokens are
        # read each turn, and next turn its span is dropped from the cache.
        note = self.note_segment()
        if note is not None and len(note) > min(left, self.budget // 8):
            notices.append("The author's note was left out this turn: the window has no room.")
            note = None
        return player, lore_segment, note, entries

    def note_segment(self) -> Segment | None:
        """The author's note's segment, or None when there is no note."""
        return self._system_segment("note", note_text(self.memory.note))

    @property
    def summary_pending(self) -> bool:
        """Whether exchanges have left the window that no summary covers yet (and summaries
        are on)."""
        if not self.memory.auto_summary or not self.summary_room():
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
        max_tokens = max(self.summary_room() - self._summary_overhead() - 2, 16)
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
        text = text.strip()[: MEMORY_LIMITS["summary"]]
        room = self.summary_room() - self._summary_overhead() - 2
        if len(self.backend.tokenize(text, special=False)) > room:
            # Tokenized again, generated text can come out longer: cut to the room.
            text = clean_summary(cut_to_tokens(self.backend, text, room))
        self.memory.add(Summary(job.through, text))
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
            "summary": self.summary_room(),
        }[kind]
        tokens = len(make_segment(self.backend, self.format, "system", rendered))
        if tokens <= limit:
            return None
        return (
            f"the {kind} takes {tokens} tokens; at most {limit} fit a context of "
            f"{self.backend.n_ctx}: shorten it, or raise n_ctx"
        )

    def check_memory_fits(self) -> None:
        """Tell the player (``startup_notices``) when the memory is too big for this context:
        it is then left out of the prompt, kept in the game until shortened."""
        problem = self.memory_problem("memory", self.memory.memory)
        if problem is not None:
            log.warning("the memory is left out of the prompt: %s", problem)
            self.startup_notices.append(
                f"The memory is left out of the prompt until you shorten it: {problem}."
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
        if action is None:
            note = self.note_segment()
            if note is not None:
                parts.append(PromptPart("note", "author's note", len(note), note.text))
            return parts
        player, lore_segment, note, _ = self._turn_segments(action, [])
        for kind, label, segment in (
            ("lore", "lore", lore_segment),
            ("note", "author's note", note),
            ("action", "your action", player),
        ):
            if segment is not None:
                parts.append(PromptPart(kind, label, len(segment), segment.text))
        return parts
