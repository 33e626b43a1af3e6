"""The play screen: the story, the choices, the action line, and the turn worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from game.backends.base import BackendError, GenerationCancelled
from game.catalog import ScenarioEntry
from game.choices import resolve_action
from game.kvstore import persist
from game.runtime import new_session, resume_session
from game.saves import (
    SaveError,
    SaveExistsError,
    SaveGame,
    SaveSlot,
    default_save_name,
    model_info,
)
from game.session import Session, SessionError
from game.transcript import Exchange
from game.tui.batching import TextBatcher
from game.tui.dialogs import SaveNameScreen
from game.tui.messages import GameReady, ReplyRewind, ReplyText, TurnDone, TurnFailed
from game.tui.progress import ReadingBar
from game.tui.widgets import ActionInput, ChoiceList, StatusLine, StoryView, TurnView

if TYPE_CHECKING:
    from game.tui.app import AdventureApp

log = logging.getLogger(__name__)


class PlayScreen(Screen[None]):
    """Plays one game: a new one of ``entry``'s scenario, or the game in ``save``."""

    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+r", "retry", "Retry", priority=True),
        Binding("ctrl+z", "undo", "Undo", priority=True),
        Binding("ctrl+y", "redo", "Redo", priority=True),
        Binding("ctrl+l", "edit", "Edit last action", priority=True),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+o", "load", "Load", priority=True),
        Binding("ctrl+n", "new_game", "New game", priority=True),
    ]

    def __init__(self, entry: ScenarioEntry | None = None, save: SaveGame | None = None) -> None:
        super().__init__()
        if (entry is None) == (save is None):
            raise ValueError("give a scenario entry or a save")
        self.entry = entry
        self.save_game = save
        self.session: Session | None = None
        self.slot: SaveSlot | None = None
        self.busy = False
        self._stop = threading.Event()
        self._streaming: TurnView | None = None
        self._last_speed = ""
        self._saved_note = ""
        self.streamed_pieces = 0  # batches of streamed text shown, for tests

    @property
    def adventure(self) -> AdventureApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield StoryView(id="story")
        yield ChoiceList(id="choices")
        yield ActionInput(placeholder="What do you do? (a number picks a choice)", id="action")
        self._reading = ReadingBar(id="reading")
        yield self._reading
        yield StatusLine("Loading the model…", id="status")
        yield Footer()

    def on_mount(self) -> None:
        scenario = self.save_game.scenario if self.save_game else self.entry.scenario  # type: ignore[union-attr]
        self.title = scenario.title
        self.sub_title = self.save_game.name if self.save_game else "new game"
        self.query_one(ChoiceList).display = False
        self.query_one(ActionInput).focus()
        self.busy = True
        self.start_game()

    # -- workers (threads: they post messages, never touch widgets) -----------------------------

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def start_game(self) -> None:
        try:
            backend = self.adventure.get_backend()
            settings = self.adventure.settings
            model = model_info(self.adventure.model_path())
            folder = self.adventure.saves
            if self.save_game is not None:
                session = resume_session(settings, self.save_game, backend)
                slot = SaveSlot.of(folder, self.save_game, model)
                self.post_message(GameReady(session, slot, new_game=False))
                return
            assert self.entry is not None
            session = new_session(settings, self.entry.scenario, backend)
            slot = SaveSlot.new(
                folder, default_save_name(self.entry.scenario), model, self.entry.pack_id
            )
            self.post_message(GameReady(session, slot, new_game=True))
        except (BackendError, SessionError, SaveError, ValueError) as exc:
            self.post_message(TurnFailed(f"The game could not start: {exc}"))
        except Exception as exc:  # a worker must never take the app down
            log.exception("starting the game failed")
            self.post_message(TurnFailed(f"The game could not start: {type(exc).__name__}: {exc}"))

    @work(thread=True, exclusive=True, group="turn", exit_on_error=False)
    def run_turn(self, action: str | None) -> None:
        """Play ``action``, or retry the last reply when it is None."""
        session, slot = self.session, self.slot
        assert session is not None
        batcher = TextBatcher(lambda text: self.post_message(ReplyText(text)))

        def rewind(text: str) -> None:
            batcher.flush()
            self.post_message(ReplyRewind(text))

        callbacks = {"on_text": batcher.add, "on_rewind": rewind, "should_stop": self._stop.is_set}
        callbacks["on_progress"] = self._reading.callback(self._stop.is_set)
        try:
            if action is None:
                result = session.retry(**callbacks)
            else:
                result = session.play(action, **callbacks)
        except GenerationCancelled:
            self.post_message(TurnFailed("Stopped while reading the story; nothing changed."))
            return
        except (BackendError, SessionError) as exc:
            self.post_message(TurnFailed(str(exc)))
            return
        except Exception as exc:
            log.exception("a turn failed")
            self.post_message(TurnFailed(f"{type(exc).__name__}: {exc}"))
            return
        batcher.flush()
        problem = None
        if slot is not None:
            try:
                slot.save(session)
            except SaveError as exc:
                problem = str(exc)
        self.post_message(TurnDone(result, problem))

    # -- messages from the workers ---------------------------------------------------------------

    def on_game_ready(self, message: GameReady) -> None:
        self.session, self.slot = message.session, message.slot
        story = self.query_one(StoryView)
        for exchange in message.session.exchanges:
            story.mount(
                TurnView(exchange.player.text, exchange.narrative, cut_short=exchange.cut_short)
            )
        story.scroll_end(animate=False)
        self.query_one(ChoiceList).show_choices(message.session.choices)
        self.sub_title = message.slot.name if message.slot else ""
        self.busy = False
        self._update_status()
        if message.new_game:
            self._begin_turn(message.session.scenario.opening)

    def on_reply_text(self, message: ReplyText) -> None:
        if self._streaming is not None:
            self.streamed_pieces += 1
            self._streaming.set_reply(self._streaming.reply + message.text, streaming=True)
            self.query_one(StoryView).follow()

    def on_reply_rewind(self, message: ReplyRewind) -> None:
        if self._streaming is not None:
            self._streaming.set_reply(message.text, streaming=True)

    def on_turn_done(self, message: TurnDone) -> None:
        assert self.session is not None
        exchange = self.session.exchanges[-1]
        if self._streaming is not None:
            self._streaming.set_reply(exchange.narrative, cut_short=exchange.cut_short)
        self._streaming = None
        self.query_one(ChoiceList).show_choices(message.result.choices)
        self.query_one(StoryView).follow()
        for notice in message.result.notices:
            self.notify(notice, severity="warning")
        stats = message.result.stats
        self._last_speed = f"{stats.tokens_per_s:.1f} tok/s"
        if message.save_problem:
            self.notify(f"The game was not saved: {message.save_problem}", severity="error")
            self._saved_note = "not saved"
        else:
            self._saved_note = "saved"
        self.busy = False
        self._update_status()

    def on_turn_failed(self, message: TurnFailed) -> None:
        self._reading.hide()
        if self._streaming is not None:
            self._streaming.remove()
            self._streaming = None
        if self.session is not None:
            self._redraw()
        self.busy = False
        self._update_status()
        self.notify(message.error, title="The model failed", severity="error", timeout=10)

    # -- player input ----------------------------------------------------------------------------

    def _begin_turn(self, action: str | None) -> None:
        """Start a turn in the worker; ``None`` retries the last reply."""
        assert self.session is not None
        self.busy = True
        self._stop.clear()
        story = self.query_one(StoryView)
        if action is None:
            # The retried reply replaces the last one on screen.
            views = list(story.query(TurnView))
            view = views[-1] if views else TurnView(self.session.exchanges[-1].player.text)
            if not views:
                story.mount(view)
            view.set_reply("", streaming=True)
        else:
            view = TurnView(action)
            view.streaming = True
            story.mount(view)
        self._streaming = view
        self.query_one(ChoiceList).show_choices([])
        story.scroll_end(animate=False)
        self._update_status("writing… (Escape stops)")
        self.run_turn(action)

    def _act(self, text: str) -> None:
        if self.busy or self.session is None:
            self.notify("Wait for the reply to finish (Escape stops it).", severity="warning")
            return
        action = resolve_action(text, self.session.choices)
        if action:
            self._begin_turn(action)

    @on(ActionInput.Submitted)
    def _submitted(self, event: ActionInput.Submitted) -> None:
        if not event.value.strip():
            return
        if self.busy:
            self.notify("Wait for the reply to finish (Escape stops it).", severity="warning")
            return
        event.input.value = ""
        self._act(event.value)

    @on(ActionInput.PickDigit)
    def _digit(self, event: ActionInput.PickDigit) -> None:
        self._pick(event.index)

    @on(ChoiceList.Picked)
    def _picked(self, event: ChoiceList.Picked) -> None:
        self._pick(event.index)

    def _pick(self, index: int) -> None:
        if self.session is None or self.busy:
            return
        choices = self.session.choices
        if 0 <= index < len(choices):
            self._begin_turn(choices[index])

    # -- actions ----------------------------------------------------------------------------------

    def _ready(self) -> Session | None:
        if self.busy or self.session is None:
            self.notify("Wait for the reply to finish (Escape stops it).", severity="warning")
            return None
        return self.session

    def action_stop(self) -> None:
        if self.busy:
            self._stop.set()

    def action_retry(self) -> None:
        session = self._ready()
        if session is None:
            return
        if not session.exchanges:
            self.notify("There is no reply to retry.", severity="warning")
            return
        self._begin_turn(None)

    def _change(self, step: Callable[[Session], Exchange]) -> Exchange | None:
        """Undo or redo a turn (``step``), show the story as it now stands, and save it."""
        session = self._ready()
        if session is None:
            return None
        try:
            changed = step(session)
        except SessionError as exc:
            self.notify(str(exc).capitalize() + ".", severity="warning")
            return None
        self._redraw()
        self._autosave()
        return changed

    def action_undo(self) -> None:
        undone = self._change(Session.undo)
        if undone is not None:
            self.notify(f"Took back: {undone.player.text}")

    def action_redo(self) -> None:
        self._change(Session.redo)

    def action_edit(self) -> None:
        """Take back the last turn and put its action in the line to edit."""
        undone = self._change(Session.undo)
        if undone is None:
            return
        action_input = self.query_one(ActionInput)
        action_input.value = undone.player.text
        action_input.cursor_position = len(undone.player.text)
        action_input.focus()

    def action_save(self) -> None:
        session = self._ready()
        if session is None or self.slot is None:
            return
        slot = self.slot

        def chosen(name: str | None) -> None:
            if not name:
                return
            try:
                path = slot.save_as(session, name) if name != slot.name else slot.save(session)
            except SaveExistsError:
                self.notify(f"A save named {name!r} exists; pick another name.", severity="error")
                return
            except SaveError as exc:
                self.notify(str(exc), title="Not saved", severity="error")
                return
            self.sub_title = slot.name
            self._saved_note = "saved"
            self._update_status()
            self.notify(f"Saved to {path.name}")
            # Store the model's KV cache too, off the UI thread (it can be hundreds of MB).
            self.app.run_worker(lambda: persist(session.backend), thread=True, group="kv")

        self.app.push_screen(SaveNameScreen(slot.name), chosen)

    def action_load(self) -> None:
        if self.busy:
            self.notify("Wait for the reply to finish (Escape stops it).", severity="warning")
            return
        self.adventure.action_load()

    def action_new_game(self) -> None:
        if self.busy:
            self._stop.set()
        self.adventure.show_start()

    # -- rendering --------------------------------------------------------------------------------

    def _autosave(self) -> None:
        if self.session is None or self.slot is None:
            return
        try:
            self.slot.save(self.session)
            self._saved_note = "saved"
        except SaveError as exc:
            self._saved_note = "not saved"
            self.notify(f"The game was not saved: {exc}", severity="error")
        self._update_status()

    def _redraw(self) -> None:
        """Show the session's story and choices as they stand."""
        assert self.session is not None
        story = self.query_one(StoryView)
        story.remove_children()
        for exchange in self.session.exchanges:
            story.mount(
                TurnView(exchange.player.text, exchange.narrative, cut_short=exchange.cut_short)
            )
        story.scroll_end(animate=False)
        self.query_one(ChoiceList).show_choices(self.session.choices)
        self._update_status()

    def _update_status(self, activity: str = "") -> None:
        parts = []
        if self.session is not None:
            backend = self.session.backend
            parts += [backend.name, f"context {self.session.context_tokens()}/{backend.n_ctx}"]
        else:
            parts.append("no model")
        if self._last_speed:
            parts.append(self._last_speed)
        if self._saved_note:
            parts.append(self._saved_note)
        if activity:
            parts.append(activity)
        self.query_one(StatusLine).update(" · ".join(parts))
