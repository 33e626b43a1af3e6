"""The Textual app: routes the screens' messages, holds the settings and the models.

Attributes go down (a screen gets what it shows when it is made), messages come up (a screen
says what the player chose; the app decides what happens). The game itself is a
:class:`~game.controller.GameController`, built and driven by the play screen's workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from game.catalog import ScenarioEntry
from game.config import ConfigError, Settings, config_file, resolve_saves_dir, save_settings
from game.controller import Explicit, GameController
from game.models import BackendFactory, ModelHost
from game.saves import SaveFolder
from game.tui.load import LoadScreen
from game.tui.play import PlayScreen
from game.tui.settings import SettingsScreen
from game.tui.start import StartScreen

if TYPE_CHECKING:
    from game.tui.browser import BrowserMode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartAt:
    """What the app opens on: a new game of ``entry`` (saved as ``name``, or not saved), the
    save at ``save``, or the start screen when neither is given."""

    entry: ScenarioEntry | None = None
    save: Path | None = None
    name: str | None = None
    saving: bool = True


class AdventureApp(App[None]):
    """The game.

    Args:
        settings: The settings in force (config file, environment and command line merged).
        entries: The scenarios to offer.
        backend_factory: Loads a model for the settings (the llama.cpp backend; a scripted one
            in tests).
        settings_path: Where the settings screen saves.
        start: Open straight into a game instead of the start screen.
        overrides: What the command line set for this run: a resumed game takes these over
            its save's own settings.
    """

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
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.entries = entries
        self.settings_path = settings_path or config_file()
        self.models = ModelHost(backend_factory)
        self._explicit = Explicit.from_overrides(overrides or {})
        self._start = start or StartAt()
        self._saving = self._start.saving
        # Games built and not yet closed: closed when their screen goes, or at quit.
        self._games: set[GameController] = set()

    @property
    def saves(self) -> SaveFolder:
        return SaveFolder(resolve_saves_dir(self.settings))

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain text, whatever the caller says: they carry save names,
        file names and model errors, and a ``[/]`` in one must show, not crash the app."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- screens -----------------------------------------------------------------------------------

    def on_mount(self) -> None:
        start = self._start
        if start.entry is not None:
            self._new_game(start.entry, start.name)
        elif start.save is not None:
            self._resume(start.save)
        else:
            self.show_start()

    def _switch_to(self, screen: Screen[None]) -> None:
        """Show ``screen`` alone (above the app's blank default screen)."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(screen)

    def show_start(self) -> None:
        newest = self.saves.newest_listing()
        self._switch_to(
            StartScreen(self.entries, continue_name=newest.save.name if newest else None)
        )

    def _new_game(self, entry: ScenarioEntry, name: str | None = None) -> None:
        settings, saving = self.settings, self._saving

        def build() -> GameController:
            return self._track(
                GameController.new_game(settings, entry, self.models, name=name, saving=saving)
            )

        self._switch_to(PlayScreen(build, entry.scenario.title))

    def _resume(self, path: Path) -> None:
        settings, saving, explicit = self.settings, self._saving, self._explicit

        def build() -> GameController:
            return self._track(
                GameController.resume(settings, path, self.models, explicit=explicit, saving=saving)
            )

        self._switch_to(PlayScreen(build, path.stem))

    def _track(self, game: GameController) -> GameController:
        self._games.add(game)
        return game

    # -- messages from the screens -----------------------------------------------------------------

    def on_start_screen_scenario_chosen(self, message: StartScreen.ScenarioChosen) -> None:
        self._saving = True
        self._new_game(message.entry)

    def on_start_screen_continue_chosen(self, message: StartScreen.ContinueChosen) -> None:
        newest = self.saves.newest()
        if newest is not None:
            self._saving = True
            self._resume(newest)

    def on_load_screen_save_chosen(self, message: LoadScreen.SaveChosen) -> None:
        self._saving = True
        self._resume(message.path)

    def on_play_screen_game_ended(self, message: PlayScreen.GameEnded) -> None:
        """A play screen is going away: its game is closed (stopped, saved, model let go) in
        a thread, so that a reply being written never blocks the screen."""
        game = message.game
        # It stays in ``_games`` until it is closed, so that an app that ends meanwhile waits
        # for the save (closing twice is harmless: the second waits for the first).
        self.run_worker(lambda: self._close(game), thread=True, group="close")

    def on_play_screen_new_game_wanted(self, message: PlayScreen.NewGameWanted) -> None:
        self.show_start()

    def on_settings_screen_saved(self, message: SettingsScreen.Saved) -> None:
        try:
            save_settings(message.settings, self.settings, self.settings_path)
        except ConfigError as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        self.settings = message.settings
        self.pop_screen()
        self.notify("Settings saved; a changed model is loaded for the next game.")

    # -- actions -----------------------------------------------------------------------------------

    def action_load(self) -> None:
        self.push_screen(LoadScreen(self.saves))

    def action_settings(self) -> None:
        if not isinstance(self.screen, SettingsScreen):
            self.push_screen(SettingsScreen(self.settings, self.settings_path))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Settings", "Model, context, GPU layers, sampling", self.action_settings
        )
        yield SystemCommand("Load a game", "Pick a saved game", self.action_load)
        if isinstance(screen, PlayScreen):
            yield from screen.commands()

    def _close(self, game: GameController) -> None:
        problem = game.close()
        self._games.discard(game)
        if problem:
            log.error("the game was not saved at its end: %s", problem)

    def on_unmount(self) -> None:
        # However the app ends (ctrl+q, a closed terminal, a test), no game is left unsaved
        # and no worker thread is left writing a reply.
        for game in list(self._games):
            self._close(game)
        self._games.clear()

    async def action_quit(self) -> None:
        """Quit: every game stops its reply, saves what was written, and lets its model go."""
        games, self._games = list(self._games), set()
        if any(game.busy for game in games):
            self.notify("Stopping the reply and saving the game…")
        if games:
            await asyncio.gather(*(asyncio.to_thread(self._close, game) for game in games))
        await self.workers.wait_for_complete()
        self.models.close()
        self.exit()


def create_app(
    settings: Settings,
    entries: list[ScenarioEntry],
    *,
    start: StartAt | None = None,
    overrides: dict[str, Any] | None = None,
    backend_factory: Callable[[Settings], Any] | None = None,
    settings_path: Path | None = None,
    browser: BrowserMode | None = None,
) -> AdventureApp:
    """The app as the command line builds it; tests build it here too (with a scripted
    ``backend_factory``), so that they start it the way a player does. ``browser``: the app
    of a browser tab (``python -m game serve``), with the host's limits."""
    if backend_factory is None:
        from game.runtime import open_backend

        backend_factory = open_backend
    if browser is not None:
        from game.tui.browser import BrowserApp

        return BrowserApp(
            browser=browser,
            settings=settings,
            entries=entries,
            backend_factory=backend_factory,
            settings_path=settings_path,
            start=start,
            overrides=overrides,
        )
    return AdventureApp(
        settings=settings,
        entries=entries,
        backend_factory=backend_factory,
        settings_path=settings_path,
        start=start,
        overrides=overrides,
    )
