"""The play screen: the story, the choices, the action line, and the workers that drive the game.

The game is a :class:`~game.controller.GameController`; this screen only shows it and forwards
what the player does. Workers run in threads, post messages and never touch a widget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import get_current_worker

from game.backends.base import BackendError, GenerationCancelled
from game.choices import resolve_action
from game.config import ConfigError
from game.controller import GameBusyError, GameController, TurnOutcome
from game.prompt import UnknownFormatError
from game.runtime import format_status
from game.saves import SaveError, SaveExistsError, SaveNameError
from game.session import SessionError
from game.tui.background import BackgroundWork
from game.tui.batching import TextBatcher
from game.tui.dialogs import SaveNameScreen
from game.tui.messages import (
    GameFailed,
    GameReady,
    ReadingProgress,
    ReplyRewind,
    ReplyText,
    StoryChanged,
    TurnDone,
    TurnFailed,
)
from game.tui.progress import ReadingBar
from game.tui.widgets import ActionInput, ChoiceList, StatusLine, StoryView, TurnView

log = logging.getLogger(__name__)

# What a turn or a change may fail with, each already one line for the player.
GAME_ERRORS = (BackendError, SessionError, SaveError, SaveNameError, GameBusyError)
START_ERRORS = (*GAME_ERRORS, ConfigError, UnknownFormatError)
WAIT = "Wait for the reply to finish (Escape stops it)."


class PlayScreen(BackgroundWork, Screen[None]):
    """Plays one game, built in a worker by ``build`` (which may load a model).

    Args:
        build: Makes the game (a new one, or one resumed from a save).
        title: What the header says until the game is ready.
    """

    DEFAULT_CSS = """
    /* Notifications sit over the story, never over the action line or the status line. */
    PlayScreen ToastRack {
        margin-bottom: 6;
    }
    """

    BINDINGS = [
        # The ids let a keymap rebind them (App.set_keymap): the browser tab does, see
        # game.tui.browser.BROWSER_KEYMAP.
        Binding("escape", "stop", "Stop reply", id="play.stop"),
        Binding("ctrl+r", "retry", "Retry", priority=True, id="play.retry"),
        Binding("ctrl+z", "undo", "Undo", priority=True, id="play.undo"),
        Binding("ctrl+y", "redo", "Redo", priority=True, id="play.redo"),
        Binding("ctrl+l", "edit", "Edit last action", priority=True, id="play.edit"),
        Binding("ctrl+s", "save", "Save", priority=True, id="play.save"),
        Binding("ctrl+o", "load", "Load", priority=True, id="play.load"),
        Binding("ctrl+n", "new_game", "New game", priority=True, id="play.new_game"),
        Binding("f6", "memory", "Memory", id="play.memory"),
        Binding("f7", "context", "Context", id="play.context"),
    ]

    busy: reactive[bool] = reactive(True)

    class GameEnded(Message):
        """The screen is going away: its game should be closed (stopped, saved, let go)."""

        def __init__(self, game: GameController) -> None:
            super().__init__()
            self.game = game

    class NewGameWanted(Message):
        """The player wants the scenario list."""

    def __init__(self, build: Callable[[], GameController], title: str) -> None:
        super().__init__()
        self._build = build
        self._title = title
        self.game: GameController | None = None
        self._streaming: TurnView | None = None
        self._pending_action: str | None = None
        self.streamed_pieces = 0  # batches of streamed text shown, for tests
        self._reading = ReadingBar(id="reading")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield StoryView(id="story")
        yield ChoiceList(id="choices")
        yield ActionInput(placeholder="What do you do? (a number picks a choice)", id="action")
        yield self._reading
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self._title
        self.sub_title = "loading the model…"
        self.query_one(ChoiceList).display = False
        self.query_one(ActionInput).focus()
        self.query_one(StatusLine).activity = "loading the model…"
        self.start_game()

    def on_unmount(self) -> None:
        if self.game is not None:
            self.game.cancel()
            self.app.post_message(self.GameEnded(self.game))

    @property
    def session(self):
        return self.game.session if self.game is not None else None

    def watch_busy(self, busy: bool) -> None:
        if not busy:
            self.query_one(StatusLine).activity = ""
            # Idle: the model may write the story so far while the player reads (unless
            # something made the screen busy again meanwhile: start_background checks).
            self.call_later(self.start_background)

    # -- workers (threads: they post messages, never touch widgets) -----------------------------

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def start_game(self) -> None:
        try:
            self.post_message(GameReady(self._build()))
        except START_ERRORS as exc:
            self.post_message(GameFailed(f"The game could not start: {exc}"))
        except Exception as exc:  # a worker must never take the app down
            log.exception("starting the game failed")
            self.post_message(GameFailed(f"The game could not start: {type(exc).__name__}: {exc}"))

    @work(thread=True, exclusive=True, group="turn", exit_on_error=False)
    def run_turn(self, game: GameController, action: str | None) -> None:
        """Play ``action``, or retry the last reply when it is None."""
        worker = get_current_worker()
        reading = self._reading  # the worker only posts messages to it
        batcher = TextBatcher(lambda text: self.post_message(ReplyText(text)))
        started = time.monotonic()

        def text(piece: str) -> None:
            # A cancelled worker (its screen went away) stops the reply at the next token.
            if worker.is_cancelled:
                game.cancel()
            batcher.add(piece)

        def rewind(text: str) -> None:
            batcher.flush()
            self.post_message(ReplyRewind(text))

        def progress(done: int, total: int) -> bool:
            if game.stopping or worker.is_cancelled:
                reading.post_message(ReadingBar.Progress(0, 0))
                return False
            self.post_message(ReadingProgress(done, total, time.monotonic() - started))
            reading.post_message(ReadingBar.Progress(done, total))
            return True

        callbacks: dict[str, Any] = {"on_text": text, "on_rewind": rewind, "on_progress": progress}
        try:
            outcome = game.retry(**callbacks) if action is None else game.play(action, **callbacks)
        except GenerationCancelled:
            self.post_message(TurnFailed("Stopped before the reply began.", action, cancelled=True))
            return
        except GAME_ERRORS as exc:
            self.post_message(TurnFailed(str(exc), action))
            return
        except Exception as exc:
            log.exception("a turn failed")
            self.post_message(TurnFailed(f"{type(exc).__name__}: {exc}", action))
            return
        batcher.flush()
        self.post_message(TurnDone(outcome))

    @work(thread=True, exclusive=True, group="change", exit_on_error=False)
    def change_story(self, game: GameController, change: str) -> None:
        """Undo, redo or edit (the autosave that follows is file I/O: not on the UI thread)."""
        try:
            if change == "undo":
                self.post_message(StoryChanged(f"Took back: {game.undo().player.text}"))
            elif change == "redo":
                self.post_message(StoryChanged(f"Put back: {game.redo().player.text}"))
            else:
                action = game.edit()
                self.post_message(StoryChanged("Edit the action and press Enter.", action))
        except GAME_ERRORS as exc:
            self.post_message(StoryChanged(str(exc)[:1].upper() + str(exc)[1:] + "."))

    @work(thread=True, exclusive=True, group="change", exit_on_error=False)
    def save_under(self, game: GameController, name: str) -> None:
        try:
            path = game.save_as(name)
        except SaveExistsError:
            self.post_message(StoryChanged(f"A save named {name!r} exists; pick another name."))
            return
        except GAME_ERRORS as exc:
            self.post_message(StoryChanged(f"Not saved: {exc}"))
            return
        self.post_message(StoryChanged(f"Saved to {path.name}"))

    # -- messages from the workers ---------------------------------------------------------------

    def on_game_ready(self, message: GameReady) -> None:
        self.game = message.game
        if not self.is_mounted:
            return
        self._redraw()
        self.busy = False
        self._show_notices()
        if self.game.needs_opening:
            self._begin_turn(self.game.session.scenario.opening)

    def on_game_failed(self, message: GameFailed) -> None:
        self.notify(message.error, title="Cannot start", severity="error", timeout=10)
        self.post_message(self.NewGameWanted())

    def on_reply_text(self, message: ReplyText) -> None:
        if self._streaming is not None:
            self.streamed_pieces += 1
            self.query_one(StatusLine).activity = "writing… (Escape stops)"
            self._streaming.reply += message.text
            self.query_one(StoryView).follow()

    def on_reply_rewind(self, message: ReplyRewind) -> None:
        if self._streaming is not None:
            self._streaming.reply = message.text

    def on_reading_progress(self, message: ReadingProgress) -> None:
        if message.total <= 0 or message.done >= message.total:
            self.query_one(StatusLine).activity = "writing… (Escape stops)"
            return
        share = message.done / message.total
        left = message.elapsed / share - message.elapsed if share else 0.0
        self.query_one(
            StatusLine
        ).activity = f"reading the story {share:.0%}, ~{left:.0f} s left (Escape stops)"

    def on_turn_done(self, message: TurnDone) -> None:
        outcome: TurnOutcome = message.outcome
        game = self.game
        assert game is not None
        exchange = game.session.exchanges[-1]
        if self._streaming is not None:
            self._streaming.finish(exchange.narrative, cut_short=exchange.cut_short)
        self._streaming = None
        self.query_one(ChoiceList).show_choices(outcome.result.choices)
        self.query_one(StoryView).follow()
        if outcome.save_problem:
            self.notify(f"The game was not saved: {outcome.save_problem}", severity="error")
        self._show_notices()
        self.query_one(StatusLine).speed = f"{outcome.result.stats.tokens_per_s:.1f} tok/s"
        self.busy = False
        self._update_status()

    def on_turn_failed(self, message: TurnFailed) -> None:
        # Through the bar's own queue, so that it comes after any report still waiting there.
        self._reading.post_message(ReadingBar.Progress(0, 0))
        # Through the bar's own queue, so that it comes after any report still waiting there.
        self._reading.post_message(ReadingBar.Progress(0, 0))
        if self._streaming is not None:
            self._streaming.remove()
            self._streaming = None
        if self.game is not None:
            self._redraw()
        self.busy = False
        action = message.action
        choices = self.game.session.choices if self.game is not None else []
        if action is not None and action not in choices and not self.query_one(ActionInput).value:
            # A typed action is not lost: it is back in the line, to send again. (A picked
            # choice is still on the list, one key away.)
            self.query_one(ActionInput).value = action
        if message.cancelled:
            self.notify(message.error, severity="warning")
        else:
            self.notify(message.error, title="The model failed", severity="error", timeout=10)

    def on_story_changed(self, message: StoryChanged) -> None:
        if self.game is not None:
            self._redraw()
        self.busy = False
        if message.action is not None:
            action_input = self.query_one(ActionInput)
            action_input.value = message.action
            action_input.cursor_position = len(message.action)
            action_input.focus()
        self._show_notices()
        self.notify(message.note)

    # -- player input ----------------------------------------------------------------------------

    def _ready(self) -> GameController | None:
        """The game when it can take a command now; else tells the player why not."""
        if self.game is None:
            self.notify("The game is still loading.", severity="warning")
            return None
        if self.busy:
            self.notify(WAIT, severity="warning")
            return None
        return self.game

    def _begin_turn(self, action: str | None) -> None:
        """Start a turn in the worker; ``None`` retries the last reply."""
        game = self.game
        assert game is not None
        self.busy = True
        story = self.query_one(StoryView)
        if action is None:
            # The retried reply replaces the last one on screen.
            views = list(story.query(TurnView))
            view = views[-1] if views else TurnView(game.session.exchanges[-1].player.text)
            if not views:
                story.mount(view)
            view.restart()
        else:
            view = TurnView(action, streaming=True)
            story.mount(view)
        self._streaming = view
        self.query_one(ChoiceList).show_choices([])
        story.scroll_end(animate=False)
        self.query_one(StatusLine).activity = "writing… (Escape stops)"
        self.run_turn(game, action)

    @on(ActionInput.Submitted)
    def _submitted(self, event: ActionInput.Submitted) -> None:
        if not event.value.strip():
            return
        game = self._ready()
        if game is None:
            return
        event.input.value = ""
        action = resolve_action(event.value, game.session.choices)
        if action:
            self._begin_turn(action)

    @on(ActionInput.PickDigit)
    def _digit(self, event: ActionInput.PickDigit) -> None:
        self._pick(event.index)

    @on(ChoiceList.Picked)
    def _picked(self, event: ChoiceList.Picked) -> None:
        self._pick(event.index)

    def _pick(self, index: int) -> None:
        game = self._ready()
        if game is None:
            return
        choices = game.session.choices
        if 0 <= index < len(choices):
            self._begin_turn(choices[index])
        elif not choices:
            self.notify(
                "This reply offers no choices: type an action, or ctrl+r writes it again.",
                severity="warning",
            )
        else:
            self.notify(f"There are only {len(choices)} choices.", severity="warning")

    # -- actions ----------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.game is not None and self.busy:
            self.game.cancel()
            self.query_one(StatusLine).activity = "stopping…"

    def action_retry(self) -> None:
        game = self._ready()
        if game is None:
            return
        if game.session.turn <= game.session.intro_turns:
            self.notify("There is no reply to retry.", severity="warning")
            return
        self._begin_turn(None)

    def _change(self, change: str) -> None:
        game = self._ready()
        if game is not None:
            self.busy = True
            self.change_story(game, change)

    def action_undo(self) -> None:
        self._change("undo")

    def action_redo(self) -> None:
        self._change("redo")

    def action_edit(self) -> None:
        """Take back the last turn and put its action in the line to edit."""
        self._change("edit")

    def action_save(self) -> None:
        game = self._ready()
        if game is None:
            return
        if game.slot is None:
            self.notify("Saving is off in this game.", severity="warning")
            return

        def chosen(name: str | None) -> None:
            if name and self.game is game and not self.busy:
                self.busy = True
                self.save_under(game, name)

        self.app.push_screen(SaveNameScreen(game.slot.name), chosen)

    def action_load(self) -> None:
        if self._ready() is not None:
            self.app.action_load()  # type: ignore[attr-defined]

    def action_new_game(self) -> None:
        # A reply being written is stopped and saved as written when the game closes.
        self.post_message(self.NewGameWanted())

    def commands(self) -> Iterable[SystemCommand]:
        """This screen's commands for the command palette."""
        yield SystemCommand("Retry", "Write the last reply again", self.action_retry)
        yield SystemCommand("Undo", "Take back the last turn", self.action_undo)
        yield SystemCommand("Redo", "Put back the turn taken back", self.action_redo)
        yield SystemCommand(
            "Edit last action", "Take back the last turn to edit it", self.action_edit
        )
        yield SystemCommand("Save", "Save the game under a name", self.action_save)
        yield SystemCommand(
            "Memory",
            "Edit the memory, the author's note and the story so far (F6)",
            self.action_memory,
        )
        yield SystemCommand(
            "Context", "What the model reads next turn, part by part (F7)", self.action_context
        )
        yield SystemCommand("New game", "Back to the scenarios", self.action_new_game)

    # -- rendering --------------------------------------------------------------------------------

    def _show_notices(self) -> None:
        if self.game is not None:
            for notice in self.game.take_notices():
                self.notify(notice, severity="warning", timeout=8)

    def _redraw(self) -> None:
        """Show the game's story and choices as they stand."""
        game = self.game
        assert game is not None
        story = self.query_one(StoryView)
        story.remove_children()
        story.mount_all(
            TurnView(exchange.player.text, exchange.narrative, cut_short=exchange.cut_short)
            for exchange in game.session.exchanges
        )
        story.scroll_end(animate=False)
        self.query_one(ChoiceList).show_choices(game.session.choices)
        self._update_status()

    def _update_status(self) -> None:
        game = self.game
        if game is None:
            return
        session = game.session
        self.title = session.scenario.title
        self.sub_title = game.slot.name if game.slot else "not saved"
        status = self.query_one(StatusLine)
        status.model = f"{session.backend.name} · {format_status(session.format, session.backend)}"
        status.context = f"context {session.context_tokens()}/{session.backend.n_ctx}"
        status.saved = game.save_state
