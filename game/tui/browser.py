"""The app as a browser tab plays it (``python -m game serve``): same screens, safer reach.

What differs from the terminal, and why:

- Keys: browsers keep some keys for themselves (Chrome never hands ctrl+n, ctrl+t, ctrl+w to a
  page; others are theirs when the page does not catch them first), so the play screen's
  ctrl keys get function-key alternatives that browsers leave alone, and the footer shows those.
- Host paths: a browser player may be anyone on the network, so the settings screen neither
  shows nor accepts the model file, and what the player sets there lasts for this tab only
  instead of being written to the host's config file (unless the host allows host paths).
- Saves: one folder per player name, per browser session, or one shared folder, as the host
  chose; see :mod:`game.playerdirs`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from game.playerdirs import SavesPer, player_folder
from game.saves import SaveNameError
from game.tui.app import AdventureApp
from game.tui.settings import SettingsScreen

log = logging.getLogger(__name__)

# Binding id -> keys (the first is shown in the footer). F1, F3, F5, F6, F7, F10, F11 and F12
# are the browsers' (help, find, reload, address bar, caret browsing, menu, full screen, dev
# tools); F2 is already the game's settings key. F4, F8 and F9 reach the page.
BROWSER_KEYMAP = {
    "play.new_game": "f4,ctrl+n",
    "play.edit": "f8,ctrl+l",
    "play.retry": "f9,ctrl+r",
}


@dataclass(frozen=True)
class BrowserMode:
    """How a browser tab may reach the host.

    Args:
        saves_per: ``player`` (the tab asks a name; a folder per name under ``saves_base``),
            ``session`` (the folder the tab was given, new for each tab) or ``shared``.
        saves_base: The host's folder for browser saves.
        host_paths: Whether the player may set the model file and write the host's config file.
    """

    saves_per: SavesPer
    saves_base: Path
    host_paths: bool = False


class PlayerNameScreen(ModalScreen[str]):
    """Ask the player's name; Enter goes on. A name that cannot be a folder says why."""

    DEFAULT_CSS = """
    PlayerNameScreen {
        align: center middle;
    }
    #player-dialog {
        width: 64;
        height: auto;
        padding: 1 2;
        border: thick $accent;
        background: $surface;
    }
    #player-problem {
        color: $error;
    }
    """

    def __init__(self, base: Path) -> None:
        super().__init__()
        self._base = base

    def compose(self) -> ComposeResult:
        with Vertical(id="player-dialog"):
            yield Label("Your name (your saved games are kept under it), then Enter:")
            yield Input(placeholder="e.g. Alice", id="player-name", max_length=200)
            yield Label("", id="player-problem")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            player_folder(self._base, event.value)
        except SaveNameError as exc:
            self.query_one("#player-problem", Label).update(str(exc)[:1].upper() + str(exc)[1:])
            return
        self.dismiss(event.value.strip())


class BrowserApp(AdventureApp):
    """:class:`AdventureApp` with the browser's keys, reach and save folders."""

    def __init__(self, *, browser: BrowserMode, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.browser = browser
        self.player: str | None = None

    def on_mount(self, event: Any) -> None:
        self.set_keymap(BROWSER_KEYMAP)
        log.info(
            "browser tab %d: saves per %s under %s",
            os.getpid(),
            self.browser.saves_per,
            self.browser.saves_base,
        )
        if self.browser.saves_per == "player":
            # The start screen (and its Continue) waits for the name that picks the folder.
            event.prevent_default()
            self.push_screen(PlayerNameScreen(self.browser.saves_base), self._player_named)
            self.call_after_refresh(log.info, "browser tab %d: asking a name", os.getpid())

    def _player_named(self, name: str | None) -> None:
        if not name:
            return
        folder = player_folder(self.browser.saves_base, name)
        self.player = name
        self.settings = self.settings.model_copy(update={"saves_dir": folder})
        log.info("browser tab %d: player %r saves in %s", os.getpid(), name, folder)
        self.show_start()

    def show_start(self) -> None:
        super().show_start()
        # Logged once the screen is drawn and takes keys (the browser tests wait for it).
        self.call_after_refresh(log.info, "browser tab %d: start screen shown", os.getpid())

    def action_load(self) -> None:
        # The command palette is there before the name is: no folder to list until then.
        if self.browser.saves_per == "player" and self.player is None:
            self.notify("Give your name first.", severity="warning")
            return
        super().action_load()

    def action_settings(self) -> None:
        if not isinstance(self.screen, SettingsScreen):
            self.push_screen(
                SettingsScreen(
                    self.settings, self.settings_path, host_paths=self.browser.host_paths
                )
            )

    def on_settings_screen_saved(self, message: SettingsScreen.Saved) -> None:
        if self.browser.host_paths:
            return  # the terminal's way: written to the host's config file
        message.prevent_default()
        self.settings = message.settings
        self.pop_screen()
        self.notify("Settings set for this browser tab; a changed setting applies to new games.")
