"""The headless game's work while the player reads (the story-so-far summary, see
:meth:`GameController.work_in_background`), run one of two ways:

- ``"thread"`` (a person at a terminal): in a daemon thread while the player types; their next
  line stops it (the controller waits for it). The thread never prints: what it did is kept
  until the loop asks, once the work is done or stopped, so the prompt the player types at is
  never garbled.
- ``"wait"`` (a script: stdin is not a terminal): before each line is read, in the loop's own
  thread, to the end. A script's lines are there at once and would stop every summary before it
  was written; waiting also makes the output the same on every run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Literal

from game.controller import GameController
from game.summarizer import BackgroundOutcome

log = logging.getLogger(__name__)

Background = Literal["thread", "wait"]
# The most seconds the loop waits for a stopped background thread to hand back its outcome.
JOIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Round:
    """One round of background work: what it did, and the turns it was to summarize (0 when
    it had no summary to write, only the prompt to make ready)."""

    outcome: BackgroundOutcome
    through: int


class BackgroundRunner:
    """Starts a game's background work when the player is idle; hands back what it did."""

    def __init__(self, game: GameController, mode: Background):
        self.game = game
        self.mode = mode
        self._worker: threading.Thread | None = None
        self._rounds: list[Round] = []

    @property
    def running(self) -> bool:
        """Whether a thread is at work now (it may be finishing)."""
        return self._worker is not None and self._worker.is_alive()

    def _round(self, through: int) -> None:
        try:
            outcome = self.game.work_in_background()
        except Exception as exc:  # a bug: said in one line, logged in full, the game goes on
            log.exception("background work failed")
            outcome = BackgroundOutcome(problem=f"{type(exc).__name__}: {exc}")
        if outcome is not None:
            self._rounds.append(Round(outcome, through))

    def start(self) -> None:
        """The player is idle: start the work waiting for the model (wait mode: do it now).
        Nothing happens while a thread is still at work."""
        if self.running or not self.game.has_background_work:
            return
        session = self.game.session
        through = session.window_start if session.summary_pending else 0
        if self.mode == "wait":
            self._round(through)
            return
        self._worker = threading.Thread(
            target=self._round, args=(through,), name="headless-background", daemon=True
        )
        self._worker.start()

    def collect(self) -> list[Round]:
        """What finished rounds did (and forget them). Call it once the work is done or
        stopped: after the controller took the game for a turn or a change, which stops the
        work and waits for it, or when :attr:`running` is False."""
        if self._worker is not None:
            self._worker.join(JOIN_TIMEOUT_S)
            if self._worker.is_alive():
                log.error("background work still running after %.0f s", JOIN_TIMEOUT_S)
                return []
            self._worker = None
        rounds, self._rounds = self._rounds, []
        return rounds
