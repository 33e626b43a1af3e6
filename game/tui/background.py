"""The play screen's work while the player reads: the story-so-far summary of the turns that
left the window, written by the model in a worker thread (see
:meth:`game.controller.GameController.work_in_background`).

It starts whenever the game goes idle (a turn finished or failed, a game opened, an undo, a
memory edit). A turn the player starts meanwhile stops it inside the controller and goes first;
it is tried again when that turn is done. The worker posts messages; only the screen's handlers
touch the status line.
"""

from __future__ import annotations

import logging

from textual import work
from textual.timer import Timer

from game.controller import GameController
from game.tui.messages import BackgroundDone, BackgroundStarted
from game.tui.widgets import StatusLine

log = logging.getLogger(__name__)

WRITING = "writing the story so far…"
# How long "story so far: …" stays on the status line after a summary was written.
DONE_SHOWN_S = 8.0


def done_text(through: int) -> str:
    """What the status line says after a summary of ``through`` turns was written."""
    return f"story so far: {through} turn{'s' if through != 1 else ''}"


class BackgroundWork:
    """A mixin for :class:`game.tui.play.PlayScreen`: starts the worker and shows its state."""

    game: GameController | None
    busy: bool
    _memory_timer: Timer | None = None

    def start_background(self) -> None:
        """Start the background worker if the game is idle and has work for the model."""
        game = self.game
        if game is None or self.busy or not game.has_background_work:  # type: ignore[attr-defined]
            return
        if game.background_running:
            return
        self.work_in_background(game)

    @work(thread=True, exclusive=True, group="background", exit_on_error=False)
    def work_in_background(self, game: GameController) -> None:
        post = self.post_message  # type: ignore[attr-defined]
        if not game.has_background_work:
            return
        post(BackgroundStarted())
        try:
            outcome = game.work_in_background()
        except Exception as exc:  # a worker must never take the app down
            log.exception("background work failed")
            post(BackgroundDone(None, f"{type(exc).__name__}: {exc}"))
            return
        post(BackgroundDone(outcome))

    def on_background_started(self, message: BackgroundStarted) -> None:
        self._show_memory(WRITING)

    def on_background_done(self, message: BackgroundDone) -> None:
        outcome = message.outcome
        if message.error is not None:
            self._show_memory("")
            self.notify(  # type: ignore[attr-defined]
                f"The story so far was not written: {message.error}", severity="error"
            )
        elif outcome is None or outcome.summary is None:
            self._show_memory("")
            if outcome is not None and outcome.problem:
                self.notify(  # type: ignore[attr-defined]
                    f"The story so far was not written: {outcome.problem}", severity="warning"
                )
        else:
            self._show_memory(done_text(outcome.through), DONE_SHOWN_S)
        self._show_notices()  # type: ignore[attr-defined]
        self._update_status()  # type: ignore[attr-defined]
        # A long gap catches up over several rounds; a round that wrote nothing is not
        # repeated at once (it would only fail again), but at the next idle moment.
        if outcome is not None and outcome.summary is not None and not outcome.cancelled:
            self.start_background()

    def _show_memory(self, text: str, seconds: float | None = None) -> None:
        """Show ``text`` in the status line's memory part (for ``seconds`` when given)."""
        if self._memory_timer is not None:
            self._memory_timer.stop()
            self._memory_timer = None
        status = self.query_one(StatusLine)  # type: ignore[attr-defined]
        status.memory = text
        if seconds is not None:
            self._memory_timer = self.set_timer(  # type: ignore[attr-defined]
                seconds, lambda: self._show_memory("")
            )
