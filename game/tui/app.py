"""The Textual app: the screens, the one model shared by every game, and the settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from game.backends.base import Backend
from game.catalog import ScenarioEntry
from game.config import Settings, config_file, resolve_model_path, resolve_saves_dir
from game.kvstore import persist
from game.saves import SaveError, SaveFolder
from game.saves import load as load_save

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], Backend]


@dataclass(frozen=True)
class StartAt:
    """What the app opens on: a new game of ``entry``, or the save at ``save``."""

    entry: ScenarioEntry | None = None
    save: Path | None = None


class AdventureApp(App[None]):
    """The game.

    Args:
        settings: The player's settings.
        entries: The scenarios to offer.
        backend_factory: Loads a model for the settings (the llama.cpp backend; a scripted one
            in tests).
        settings_path: Where the settings screen saves.
        start: Open straight into a game instead of the start screen.
    """

    CSS_PATH = "app.tcss"
    TITLE = "Metharme Adventure"
    BINDINGS = [Binding("f2", "settings", "Settings", show=False)]

    def __init__(
        self,
        *,
        settings: Settings,
        entries: list[ScenarioEntry],
        backend_factory: BackendFactory,
        settings_path: Path | None = None,
        start: StartAt | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.entries = entries
        self.backend_factory = backend_factory
        self.settings_path = settings_path or config_file()
        self.saves = SaveFolder(resolve_saves_dir(settings))
        self._start = start or StartAt()
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()

    # -- the model ---------------------------------------------------------------------------------

    def get_backend(self) -> Backend:
        """The loaded model, loading it on first use (call from a worker thread)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = self.backend_factory(self.settings)
            return self._backend

    def model_path(self) -> Path:
        return resolve_model_path(self.settings)

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings; the model is loaded again for the next game."""
        self.settings = settings
        self.saves = SaveFolder(resolve_saves_dir(settings))
        with self._backend_lock:
            old, self._backend = self._backend, None
        persist(old)  # the old model's KV cache, for when it is played again
        close = getattr(old, "close", None)
        if close is not None:
            close()

    # -- screens -----------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._start.entry is not None:
            self.start_game(self._start.entry)
        elif self._start.save is not None:
            self.show_start()
            self.resume(self._start.save)
        else:
            self.show_start()

    def show_start(self) -> None:
        from game.tui.start import StartScreen

        self._replace_all(StartScreen())

    def _replace_all(self, screen: Screen[None]) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(screen)

    def start_game(self, entry: ScenarioEntry) -> None:
        from game.tui.play import PlayScreen

        self._replace_all(PlayScreen(entry=entry))

    def resume(self, path: Path) -> None:
        from game.tui.play import PlayScreen

        try:
            save = load_save(path)
        except SaveError as exc:
            self.notify(str(exc), title="Cannot load", severity="error", timeout=10)
            return
        self._replace_all(PlayScreen(save=save))

    def action_load(self) -> None:
        from game.tui.load import LoadScreen

        self.push_screen(LoadScreen())

    def action_settings(self) -> None:
        from game.tui.settings import SettingsScreen

        self.push_screen(SettingsScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        from game.tui.play import PlayScreen

        yield SystemCommand(
            "Settings", "Model, context, GPU layers, sampling", self.action_settings
        )
        yield SystemCommand("Load a game", "Pick a saved game", self.action_load)
        if isinstance(screen, PlayScreen):
            yield SystemCommand("Retry", "Write the last reply again", screen.action_retry)
            yield SystemCommand("Undo", "Take back the last turn", screen.action_undo)
            yield SystemCommand("Redo", "Put back the turn taken back", screen.action_redo)
            yield SystemCommand(
                "Edit last action", "Take back the last turn to edit it", screen.action_edit
            )
            yield SystemCommand("Save", "Save the game under a name", screen.action_save)
            yield SystemCommand("New game", "Back to the scenarios", screen.action_new_game)

    async def action_quit(self) -> None:
        """Quit, saving the game in play first (so nothing is lost)."""
        from game.tui.play import PlayScreen

        for screen in self.screen_stack:
            if isinstance(screen, PlayScreen) and screen.session is not None and screen.slot:
                screen._stop.set()
                if not screen.busy:
                    try:
                        screen.slot.save(screen.session)
                    except SaveError as exc:
                        log.error("autosave on quit failed: %s", exc)
                    persist(screen.session.backend)
        self.exit()
