"""The settings screen: model, context, GPU layers, prompt format, choices and sampling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select

from game.config import ConfigError, Settings, save_settings
from game.errors import first_error
from game.prompt import FORMATS

if TYPE_CHECKING:
    from game.tui.app import AdventureApp

# (field, label, placeholder); numbers left empty mean "the default".
TEXT_FIELDS = [
    ("model_path", "Model file (GGUF)", "empty: the embedded SmolLM2 model"),
    ("n_ctx", "Context size (tokens)", "2048"),
    ("n_gpu_layers", "GPU layers (-1 all)", "empty: all when the build supports a GPU"),
    ("n_threads", "CPU threads", "empty: the physical cores"),
    ("n_threads_batch", "CPU threads for reading the prompt", "empty: every logical CPU"),
    ("kv_store_mb", "Stored KV caches (MB, 0 off)", "2048"),
    ("seed", "Seed", "empty: a new one each game"),
]
SAMPLING_FIELDS = [
    ("temperature", "Temperature", "0.8"),
    ("top_p", "Top-p", "0.95"),
    ("top_k", "Top-k", "40"),
    ("min_p", "Min-p", "0.05"),
    ("repeat_penalty", "Repeat penalty", "1.1"),
    ("max_tokens", "Reply tokens (max)", "300"),
]


class SettingsScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "save", "Save")]

    def compose(self) -> ComposeResult:
        adventure: AdventureApp = self.app  # type: ignore[assignment]
        settings = adventure.settings
        yield Header(show_clock=False)
        with VerticalScroll(id="settings-form"):
            for name, label, placeholder in TEXT_FIELDS:
                value = getattr(settings, name)
                yield Label(label)
                yield Input("" if value is None else str(value), placeholder=placeholder, id=name)
            yield Label("Prompt format")
            formats = [(name, name) for name in sorted(FORMATS)]
            yield Select(
                formats,
                value=settings.prompt_format or Select.NULL,
                prompt="from the model's chat template",
                id="prompt_format",
            )
            yield Label("Choices")
            modes = [("guided (a grammar guarantees options)", "guided"), ("free", "free")]
            yield Select(
                modes,
                value=settings.choice_mode or Select.NULL,
                prompt="the scenario's (guided)",
                id="choice_mode",
            )
            for name, label, placeholder in SAMPLING_FIELDS:
                value = getattr(settings.sampling, name)
                yield Label(label)
                yield Input(
                    "" if value is None else str(value),
                    placeholder=placeholder,
                    id=f"sampling-{name}",
                )
            with Horizontal(id="settings-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Settings"
        adventure: AdventureApp = self.app  # type: ignore[assignment]
        self.sub_title = str(adventure.settings_path)

    def _collect(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, _, _ in TEXT_FIELDS:
            value = self.query_one(f"#{name}", Input).value.strip()
            if value:
                data[name] = Path(value) if name == "model_path" else value
        for name in ("prompt_format", "choice_mode"):
            value = self.query_one(f"#{name}", Select).value
            if value is not Select.NULL:
                data[name] = value
        sampling = {}
        for name, _, _ in SAMPLING_FIELDS:
            value = self.query_one(f"#sampling-{name}", Input).value.strip()
            if value:
                sampling[name] = value
        data["sampling"] = sampling
        return data

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        adventure: AdventureApp = self.app  # type: ignore[assignment]
        try:
            settings = Settings.model_validate(self._collect())
        except ValidationError as exc:
            self.notify(first_error(exc, "settings"), title="Not saved", severity="error")
            return
        try:
            save_settings(settings, adventure.settings_path)
        except (OSError, ConfigError) as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        adventure.apply_settings(settings)
        self.notify("Settings saved; they apply to the next game.")
        self.app.pop_screen()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.app.pop_screen()
