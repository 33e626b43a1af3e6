"""The play screen's memory side: the memory screen (F6), the context view (F7), and the work
while the player reads: the story-so-far summary of the turns that left the window, written by
the model in a worker thread (see
:meth:`game.controller.GameController.work_in_background`).

It starts whenever the game goes idle (a turn finished or failed, a game opened, an undo, a
memory edit). A turn the player starts meanwhile stops it inside the controller and goes first;
it is tried again when that turn is done. The worker posts messages; only the screen's handlers
touch the status line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from textual import work
from textual.timer import Timer

from game.choices import resolve_action
from game.controller import GameController
from game.tui.context_view import ContextReport, ContextScreen
from game.tui.memory import MemoryScreen
from game.tui.messages import BackgroundDone, BackgroundStarted
from game.tui.widgets import ActionInput, StatusLine

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from textual.screen import Screen

    _Base = Screen[None]
else:
    _Base = object

WRITING = "writing the story so far…"
# How long "story so far: …" stays on the status line after a summary was written.
DONE_SHOWN_S = 8.0


def done_text(through: int) -> str:
    """What the status line says after a summary of ``through`` turns was written."""
    return f"story so far: {through} turn{'s' if through != 1 else ''}"


class BackgroundWork(_Base):
    """A mixin for :class:`game.tui.play.PlayScreen`: the memory screen and the context view,
    the background worker and its state on the status line."""

    game: GameController | None
    busy: bool

    if TYPE_CHECKING:  # what the play screen provides

        def _ready(self) -> GameController | None: ...
        def _show_notices(self) -> None: ...
        def _update_status(self) -> None: ...

    _memory_timer: Timer | None = None

    def action_memory(self) -> None:
        """Edit the memory, the author's note and the story so far."""
        game = self.game
        if game is None:
            self.notify("The game is still loading.", severity="warning")
            return

        def closed(changed: bool | None) -> None:
            if changed and self.game is game:
                self._show_notices()
                self._update_status()
                self.notify("Memory saved: the next turn reads it.")
                self.start_background()

        self.app.push_screen(MemoryScreen(game), closed)

    def action_context(self) -> None:
        """Show what the model reads next turn."""
        game = self._ready()
        if game is None:
            return
        action = self.query_one(ActionInput).value.strip()
        if action:
            action = resolve_action(action, game.session.choices) or action
        report = ContextReport.of(game.session, action or None, writing=game.background_running)
        self.app.push_screen(ContextScreen(report))

    def start_background(self) -> None:
        """Start the background worker if the game is idle and has work for the model."""
        game = self.game
        if game is None or self.busy or not game.has_background_work:
            return
        if game.background_running:
            return
        self.work_in_background(game)

    @work(thread=True, exclusive=True, group="background", exit_on_error=False)
    def work_in_background(self, game: GameController) -> None:
        post = self.post_message
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
            self.notify(f"The story so far was not written: {message.error}", severity="error")
        elif outcome is None or outcome.summary is None:
            self._show_memory("")
            if outcome is not None and outcome.problem:
                self.notify(
                    f"The story so far was not written: {outcome.problem}", severity="warning"
                )
        else:
            self._show_memory(done_text(outcome.through), DONE_SHOWN_S)
        self._show_notices()
        self._update_status()
        # A long gap catches up over several rounds; a round that wrote nothing is not
        # repeated at once (it would only fail again), but at the next idle moment.
        if outcome is not None and outcome.summary is not None and not outcome.cancelled:
            self.start_background()

    def _show_memory(self, text: str, seconds: float | None = None) -> None:
        """Show ``text`` in the status line's memory part (for ``seconds`` when given)."""
        if self._memory_timer is not None:
            self._memory_timer.stop()
            self._memory_timer = None
        status = self.query_one(StatusLine)
        status.memory = text
        if seconds is not None:
            self._memory_timer = self.set_timer(seconds, lambda: self._show_memory(""))
