"""The game controller: the one flow of a game that every front end drives.

It owns a session, its save slot and autosave, undo/redo/retry/edit, save-as, the notices the
player should see (the model changed, an action was cut, a save failed), cancellation, and the
model the game holds. The TUI and the headless loop are thin front ends over it; the CLI builds
it. No Textual and no llama_cpp here.

Threads: a front end may run :meth:`play` and :meth:`retry` in a worker thread and call
:meth:`cancel` from another. One turn at a time: whatever would change the game while a reply is
written (another turn, undo, save-as) raises :class:`GameBusyError` instead of waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from game.backends.base import Backend, ProgressCallback
from game.catalog import ScenarioEntry
from game.config import ConfigError, Settings, resolve_saves_dir
from game.kvstore import persist
from game.memory import MEMORY_LIMITS
from game.models import ModelHost
from game.prompt import get_format
from game.runtime import game_model_info, new_session
from game.saves import (
    SaveError,
    SaveFolder,
    SaveGame,
    SaveSlot,
    default_save_name,
    new_session_from_save,
)
from game.saves import load as load_save
from game.scenario import Sampling
from game.session import PromptPart, Session, TurnResult
from game.summarizer import BackgroundOutcome, run_background
from game.textsafety import clean_input
from game.transcript import Exchange

log = logging.getLogger(__name__)

TextCallback = Callable[[str], None]
# How long a turn waits for background work (a summary being written) to stop.
BACKGROUND_STOP_S = 30.0


class MemoryTextError(ValueError):
    """Text the player gave for the memory, the note or the summary cannot be kept; the
    message is one line."""


class GameBusyError(Exception):
    """A reply is being written; the game cannot change until it is done (or stopped)."""

    def __init__(self) -> None:
        super().__init__("a reply is being written: wait for it, or stop it first")


@dataclass(frozen=True)
class TurnOutcome:
    """A finished turn and whether it was saved."""

    result: TurnResult
    save_problem: str | None = None


@dataclass(frozen=True)
class Explicit:
    """What the player asked for this run only (the command line): it beats what a resumed
    save says. Fields left None keep the save's own."""

    prompt_format: str | None = None
    choice_mode: str | None = None
    seed: int | None = None
    sampling: Sampling = field(default_factory=Sampling)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> Explicit:
        """From the command line's overrides, as :func:`game.config.load_settings` takes them."""
        return cls(
            prompt_format=overrides.get("prompt_format"),
            choice_mode=overrides.get("choice_mode"),
            seed=overrides.get("seed"),
            sampling=Sampling.model_validate(overrides.get("sampling") or {}),
        )


def _unused_default_name(folder: SaveFolder, entry: ScenarioEntry) -> str:
    """The scenario-and-time name, made unique when a game of the same second has it."""
    name = default_save_name(entry.scenario)
    candidate, number = name, 2
    while folder.path_for(candidate).exists():
        candidate, number = f"{name} {number}", number + 1
    return candidate


class GameController:
    """One game in play.

    Args:
        session: The game.
        slot: Where it saves itself after every change; None when saving is off.
        host: The model host the session's backend was acquired from; released on close.
        notices: Things the player should be told when the game opens.
    """

    def __init__(
        self,
        session: Session,
        slot: SaveSlot | None,
        *,
        host: ModelHost | None = None,
        notices: list[str] | None = None,
    ):
        self.session = session
        self.slot = slot
        self._host = host
        self._notices = [*(notices or []), *session.startup_notices]
        self._turn_lock = threading.Lock()
        self._stop = threading.Event()
        self._background_stop = threading.Event()
        self._background_running = False
        # The prompt changed ahead of the window (memory, note, summary): the backend's cache
        # should be made ready in place before the next turn.
        self._prepare_wanted = False
        self._told_no_in_place = False
        self._closed = False
        self.save_state = "saving off" if slot is None else "not saved yet"

    # -- building a game ---------------------------------------------------------------------

    @classmethod
    def new_game(
        cls,
        settings: Settings,
        entry: ScenarioEntry,
        host: ModelHost,
        *,
        name: str | None = None,
        saving: bool = True,
    ) -> GameController:
        """A new game of ``entry``'s scenario.

        Raises:
            SaveExistsError: when ``name`` is another game's save (nothing is loaded).
            SaveNameError: when ``name`` cannot be a save's name.
            BackendError, ConfigError, SessionError: when the model or the session fails.
        """
        slot = None
        if saving:
            folder = SaveFolder(resolve_saves_dir(settings))
            model = game_model_info(settings)
            slot = SaveSlot.new(
                folder, name or _unused_default_name(folder, entry), model, entry.pack_id
            )
            if slot.path.exists():
                raise ConfigError(
                    f"a save named {slot.name!r} exists ({slot.path}): resume it, or pick "
                    "another name"
                )
        backend = host.acquire(settings)
        try:
            session = new_session(settings, entry.scenario, backend)
        except BaseException:
            host.release(backend)
            raise
        return cls(session, slot, host=host)

    @classmethod
    def resume(
        cls,
        settings: Settings,
        path: Path,
        host: ModelHost,
        *,
        explicit: Explicit | None = None,
        saving: bool = True,
        save: SaveGame | None = None,
    ) -> GameController:
        """Go on with the game saved at ``path`` (``save`` when it was already read): in the
        save's prompt format, choice mode, sampling and seed, unless ``explicit`` names others.

        Raises:
            SaveError: when the save cannot be read (nothing is loaded).
            UnknownFormatError: when its prompt format is unknown (nothing is loaded).
            BackendError, ConfigError, SessionError: when the model or the session fails.
        """
        explicit = explicit or Explicit()
        save = save or load_save(path)
        # Checked before the model loads: a bad save should not cost a model load.
        fmt = get_format(explicit.prompt_format or save.prompt_format)
        model = game_model_info(settings)
        notices = []
        if (model.file, model.size) != (save.model.file, save.model.size):
            notices.append(
                f"This game was played on {save.model.file}; it goes on with {model.file}."
            )
        folder = SaveFolder(resolve_saves_dir(settings))
        slot = SaveSlot.of(folder, save, model, path) if saving else None
        backend = host.acquire(settings)
        try:
            session = new_session_from_save(
                save,
                backend,
                fmt,
                sampling=explicit.sampling.merged_over(save.sampling),
                choice_mode=explicit.choice_mode or save.choice_mode,  # type: ignore[arg-type]
                seed=save.seed if explicit.seed is None else explicit.seed,
            )
        except BaseException:
            host.release(backend)
            raise
        game = cls(session, slot, host=host, notices=notices)
        if slot is not None and slot.owned is not None:
            game.save_state = "saved"  # it is the file it was loaded from
        return game

    # -- state ---------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return self.session.backend

    @property
    def busy(self) -> bool:
        """Whether a turn is being written now."""
        return self._turn_lock.locked()

    @property
    def stopping(self) -> bool:
        """Whether the player asked the reply being written to stop."""
        return self._stop.is_set()

    @property
    def needs_opening(self) -> bool:
        """A new game whose opening turn has not been played yet."""
        return not self.session.exchanges

    def take_notices(self) -> list[str]:
        """Notices not yet shown to the player (and forget them)."""
        notices, self._notices = self._notices, []
        return notices

    @property
    def background_running(self) -> bool:
        """Whether a summary is being written (or the prompt made ready) now."""
        return self._background_running

    @property
    def has_background_work(self) -> bool:
        """Whether there is work for the model while the player reads."""
        if self._closed:
            return False
        return self.session.summary_pending or (
            self._prepare_wanted and self.session.backend.edits_cache_in_place
        )

    def _acquire(self) -> None:
        """Take the turn lock; background work holding it is stopped and waited for."""
        if self._closed:
            raise GameBusyError()
        if self._turn_lock.acquire(blocking=False):
            return
        if self._background_running:
            self._background_stop.set()
            if self._turn_lock.acquire(timeout=BACKGROUND_STOP_S):
                return
            log.error("background work did not stop within %.0f s", BACKGROUND_STOP_S)
        raise GameBusyError()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self._acquire()
        try:
            if self._closed:
                raise GameBusyError()
            yield
        finally:
            self._turn_lock.release()

    # -- turns ---------------------------------------------------------------------------------

    def play(
        self,
        action: str,
        *,
        on_text: TextCallback | None = None,
        on_rewind: TextCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TurnOutcome:
        """Play one turn and save the game. When it fails (for whatever reason: the model, a
        cancelled prompt read, a bug), the game is exactly as it was and nothing is saved."""
        return self._turn(
            lambda **kw: self.session.play(action, **kw), on_text, on_rewind, on_progress
        )

    def play_opening(self, **callbacks: Any) -> TurnOutcome:
        """Play the scenario's opening line: a new game's first turn."""
        return self.play(self.session.scenario.opening, **callbacks)

    def retry(
        self,
        *,
        on_text: TextCallback | None = None,
        on_rewind: TextCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TurnOutcome:
        """Write the last reply again (see :meth:`Session.retry`), then save."""
        return self._turn(self.session.retry, on_text, on_rewind, on_progress)

    def _turn(
        self,
        run: Callable[..., TurnResult],
        on_text: TextCallback | None,
        on_rewind: TextCallback | None,
        on_progress: ProgressCallback | None,
    ) -> TurnOutcome:
        with self._exclusive():
            self._stop.clear()
            kwargs: dict[str, Any] = {
                "on_text": on_text,
                "on_rewind": on_rewind,
                "should_stop": self._stop.is_set,
            }
            if on_progress is not None:

                def progress(done: int, total: int) -> bool:
                    return on_progress(done, total) is not False and not self._stop.is_set()

                kwargs["on_progress"] = progress
            result = run(**kwargs)
            self._prepare_wanted = False  # the turn's prompt brought the cache in line
            self._notices += result.notices
            return TurnOutcome(result, self._autosave())

    # -- while the player reads --------------------------------------------------------------

    def work_in_background(self) -> BackgroundOutcome | None:
        """Do the work waiting for an idle model: write the story-so-far summary of the
        exchanges that left the window, and make the cache hold the new prompt in place.

        Meant for a worker thread after each turn. A turn (or any change) asked for meanwhile
        stops it and goes first; the summary is then written at the next idle moment. Returns
        None when there was nothing to do or the game was busy.
        """
        if not self.has_background_work:
            return None
        # Marked running before the lock is taken: a turn that finds the lock held then always
        # knows to stop this work (and its stop is never cleared after it was asked for).
        self._background_stop.clear()
        self._background_running = True
        if not self._turn_lock.acquire(blocking=False):
            self._background_running = False
            return None
        try:
            if self._closed:
                return None
            outcome = run_background(
                self.session, self._background_stop.is_set, prepare=self._prepare_wanted
            )
            if outcome.prepare_stats is not None and not outcome.cancelled:
                self._prepare_wanted = False
            if outcome.summary is not None:
                self._notices_on_save(self._autosave())
                if not self.session.backend.edits_cache_in_place and not self._told_no_in_place:
                    self._told_no_in_place = True
                    self._notices.append(
                        f"{self.session.backend.name} cannot take the story so far in place: "
                        "the turn after each summary reads the window again."
                    )
            return outcome
        finally:
            self._background_running = False
            self._turn_lock.release()

    # -- memory --------------------------------------------------------------------------------

    def context_view(self, action: str | None = None) -> list[PromptPart]:
        """What the model reads next turn, segment by segment (see Session.context_view)."""
        return self.session.context_view(action)

    def _memory_text(self, field_name: str, text: str) -> str:
        """The text as kept: controls removed, lines kept; one clear line when too long."""
        text = "\n".join(clean_input(line) for line in text.strip().splitlines()).strip()
        limit = MEMORY_LIMITS[field_name]
        if len(text) > limit:
            raise MemoryTextError(
                f"the {field_name} is {len(text)} characters long; it may have {limit}"
            )
        problem = self.session.memory_problem(field_name, text)
        if problem is not None:
            raise MemoryTextError(problem)
        return text

    def _changed_memory(self) -> None:
        self._prepare_wanted = True
        self._notices_on_save(self._autosave())

    def set_memory(self, text: str) -> None:
        """Replace the memory pinned after the system prompt ("" for none)."""
        text = self._memory_text("memory", text)
        with self._exclusive():
            self.session.memory.memory = text
            self._changed_memory()

    def set_note(self, text: str) -> None:
        """Replace the author's note placed before each action ("" for none)."""
        text = self._memory_text("note", text)
        with self._exclusive():
            self.session.memory.note = text
            self._changed_memory()

    def set_summary(self, text: str) -> None:
        """Replace the story so far with the player's own text (it covers the exchanges that
        have left the window)."""
        text = self._memory_text("summary", text)
        with self._exclusive():
            self.session.replace_summary(text)
            self._changed_memory()

    def set_summaries(self, on: bool) -> None:
        """Turn the model's story-so-far summaries on or off for this game."""
        with self._exclusive():
            self.session.memory.auto_summary = on
            self._notices_on_save(self._autosave())

    def cancel(self) -> None:
        """Stop the reply being written (from any thread): what was written stays, cut short;
        a prompt still being read is abandoned and the game stays as it was."""
        self._stop.set()

    def undo(self) -> Exchange:
        """Take back the last turn (and save); raises SessionError when there is none."""
        with self._exclusive():
            undone = self.session.undo()
            self._notices_on_save(self._autosave())
            return undone

    def redo(self) -> Exchange:
        """Put back the turn last taken back (and save)."""
        with self._exclusive():
            redone = self.session.redo()
            self._notices_on_save(self._autosave())
            return redone

    def edit(self) -> str:
        """Take back the last turn so that its action can be edited; returns the action."""
        return self.undo().player.text

    def save_as(self, name: str) -> Path:
        """Save now, under ``name`` when given (later saves go there too).

        Raises:
            SaveError, SaveExistsError, SaveNameError: nothing changed.
        """
        with self._exclusive():
            if self.slot is None:
                raise SaveError(Path("-"), "saving is off in this game")
            path = self.slot.save_as(self.session, name) if name else self.slot.save(self.session)
            self.save_state = "saved"
        # A saved game's KV cache is stored too, so that resuming it reads nothing again.
        persist(self.session.backend)
        return path

    def _autosave(self) -> str | None:
        """Save after a change; return the problem when it failed (the game goes on)."""
        if self.slot is None:
            return None
        try:
            self.slot.save(self.session)
        except SaveError as exc:
            self.save_state = "not saved"
            log.error("autosave failed: %s", exc)
            return str(exc)
        self.save_state = "saved"
        return None

    def _notices_on_save(self, problem: str | None) -> None:
        if problem is not None:
            self._notices.append(f"The game was not saved: {problem}")

    # -- the end -------------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> str | None:
        """End the game: stop a reply being written, wait for it (what was written is kept),
        save, and let the model go. Returns the save's problem, if any. Idempotent: a second
        call (from another thread) returns once the first has saved."""
        self.cancel()
        self._background_stop.set()
        if not self._turn_lock.acquire(timeout=timeout):
            log.error("the reply did not stop within %.0f s; the game was not saved", timeout)
            return "the reply did not stop in time"
        try:
            if self._closed:  # closed by another thread while this one waited
                return None
            self._closed = True
            problem = self._autosave() if self.session.exchanges else None
        finally:
            self._turn_lock.release()
        persist(self.session.backend)
        if self._host is not None:
            self._host.release(self.session.backend)
        return problem
