"""The turn manager: one game of one scenario against one backend. No UI and no I/O of its own.

A turn builds the prompt from token-counted segments (the pinned system prompt, the exchanges
that fit the window, the new player action, the model's open prefix), streams the reply through
a stop-string scanner, and keeps the exchange with the token ids the model generated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from game.backends.base import Backend, BackendError, GenerationRequest, GenerationStats
from game.choices import parse_reply
from game.prompt import PromptFormat, render
from game.scenario import Sampling, Scenario, render_system_prompt
from game.streaming import StopScanner
from game.transcript import (
    Exchange,
    Segment,
    cut_to_tokens,
    fit_window,
    make_segment,
    reply_segment,
    tokenize_pieces,
)

log = logging.getLogger(__name__)

DEFAULT_SAMPLING = Sampling(
    temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=300
)


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
            "tokens_per_s": round(self.stats.tokens_per_s, 2),
            "finish_reason": self.stats.finish_reason,
            "window_start": self.window_start,
            "window_slid": self.slid,
            "notices": self.notices,
        }


class Session:
    """One game in progress.

    Args:
        scenario: The scenario being played.
        backend: The model.
        fmt: The prompt format the model expects.
        sampling: Sampling settings; the scenario's overrides apply on top.
        seed: Base seed; the Nth generation of the session samples with ``seed + N``, so a
            replay is reproducible and a retry does not repeat the reply it replaces.
        headroom: Tokens to free beyond the overflow when the window slides; default a quarter
            of the prompt budget.
    """

    def __init__(
        self,
        scenario: Scenario,
        backend: Backend,
        fmt: PromptFormat,
        *,
        sampling: Sampling | None = None,
        seed: int | None = None,
        headroom: int | None = None,
    ):
        self.scenario = scenario
        self.backend = backend
        self.format = fmt
        self.sampling = scenario.sampling.merged_over(
            (sampling or Sampling()).merged_over(DEFAULT_SAMPLING)
        )
        self.seed = seed
        self.system_prompt = render_system_prompt(scenario)
        system_tokens = backend.bos() + tokenize_pieces(backend, fmt, "system", self.system_prompt)
        self.system = Segment("system", self.system_prompt, tuple(system_tokens))
        self._model_open = tuple(backend.tokenize(fmt.model_prefix, special=True))
        self.exchanges: list[Exchange] = []
        self.window_start = 0
        self.generations = 0
        self.headroom = self.budget // 4 if headroom is None else headroom
        if len(self.system) + len(self._model_open) + 8 > self.budget:
            raise SessionError(
                f"the system prompt takes {len(self.system)} tokens, too many for a context of "
                f"{backend.n_ctx} with {self.max_tokens} reserved for replies; raise n_ctx"
            )

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
        """Tokens the current window holds (system prompt and kept exchanges)."""
        return len(self.system) + sum(ex.token_count for ex in self.kept_exchanges())

    def prompt_text(self, action: str | None = None) -> str:
        """The text of the window as a prompt; with ``action``, as the next turn would send it
        (before any slide that turn would need)."""
        turns: list[tuple[str, str]] = []
        for exchange in self.kept_exchanges():
            turns += [("user", exchange.player.text), ("model", exchange.reply.text)]
        if action is not None:
            turns.append(("user", action))
        return render(self.format.name, self.system_prompt, turns)

    def _player_segment(self, action: str, notices: list[str]) -> Segment:
        segment = make_segment(self.backend, self.format, "user", action)
        room = self.budget - len(self.system) - len(self._model_open)
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
        should_stop: Callable[[], bool] | None = None,
    ) -> TurnResult:
        """Play one turn.

        Args:
            action: What the player did (a choice's text or free text).
            on_text: Called with each piece of reply text as it becomes safe to show.
            should_stop: Polled after each token; True stops the reply, which is kept as written
                and marked cut short.

        Raises:
            BackendError: when the model fails; the session is unchanged.
        """
        notices: list[str] = []
        player = self._player_segment(action, notices)
        start = fit_window(
            system_tokens=len(self.system),
            exchange_tokens=[exchange.token_count for exchange in self.exchanges],
            pending_tokens=len(player) + len(self._model_open),
            budget=self.budget,
            start=self.window_start,
            headroom=self.headroom,
        )
        slid = start != self.window_start
        if slid:
            log.info("window slides: exchanges %d..%d leave", self.window_start, start - 1)
        segments = [self.system.tokens]
        for exchange in self.exchanges[start:]:
            segments += [exchange.player.tokens, exchange.reply.tokens]
        segments += [player.tokens, self._model_open]

        scanner = StopScanner(self.format.stop)
        generated: list[int] = []
        cancelled = False

        def on_token(token: int, piece: str) -> bool:
            nonlocal cancelled
            generated.append(token)
            shown = scanner.feed(piece)
            if shown and on_text is not None:
                on_text(shown)
            if scanner.stopped:
                return False
            if should_stop is not None and should_stop():
                cancelled = True
                return False
            return True

        seed = None if self.seed is None else self.seed + self.generations
        request = GenerationRequest(max_tokens=self.max_tokens, sampling=self.sampling, seed=seed)
        self.generations += 1
        stats = self.backend.generate(segments, request, on_token)
        if not scanner.stopped and not cancelled:
            tail = scanner.flush()
            if tail and on_text is not None:
                on_text(tail)
        text = scanner.text
        # The generated ids are kept as they are unless the text was trimmed (a stop string, or
        # a held-back partial one on cancel): then they no longer spell the reply.
        exact = not scanner.stopped and not scanner.held
        reply = reply_segment(self.backend, self.format, text, generated if exact else None)
        parsed = parse_reply(text)
        cut_short = cancelled or stats.finish_reason == "length"
        self.exchanges.append(Exchange(player, reply, parsed.narrative, parsed.choices, cut_short))
        self.window_start = start
        return TurnResult(
            turn=len(self.exchanges),
            action=player.text,
            narrative=parsed.narrative,
            choices=parsed.choices,
            cut_short=cut_short,
            stats=stats,
            window_start=start,
            slid=slid,
            notices=notices,
        )

    def undo(self) -> Exchange:
        """Take back the last exchange and return it."""
        if not self.exchanges:
            raise SessionError("there is no turn to undo")
        exchange = self.exchanges.pop()
        self.window_start = min(self.window_start, len(self.exchanges))
        return exchange

    def retry(self, **kwargs: object) -> TurnResult:
        """Generate the last reply again for the same action; see :meth:`play`."""
        last = self.undo()
        try:
            return self.play(last.player.text, **kwargs)  # type: ignore[arg-type]
        except BackendError:
            self.exchanges.append(last)
            raise
