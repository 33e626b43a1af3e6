"""The settings screen: model, context, GPU layers, prompt format, choices and sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select

from game.config import Settings, model_file_problem
from game.errors import first_error
from game.prompt import FORMATS

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
    """Edit ``settings``; Save posts :class:`Saved` with the new settings (the app writes what
    changed to the config file at ``path``)."""

    DEFAULT_CSS = """
    #settings-form {
        padding: 0 2;
    }
    #settings-form Input, #settings-form Select {
        margin-bottom: 1;
    }
    #settings-buttons {
        height: auto;
    }
    """

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "save", "Save")]

    class Saved(Message):
        """The player saved these settings."""

        def __init__(self, settings: Settings) -> None:
            super().__init__()
            self.settings = settings

    def __init__(self, settings: Settings, path: Path, *, host_paths: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.path = path
        # False in a browser tab: the model file (a path on the host) is neither shown nor
        # taken, and what is saved lasts for the tab (see game.tui.browser).
        self.host_paths = host_paths
        self.text_fields = [
            field for field in TEXT_FIELDS if host_paths or field[0] != "model_path"
        ]

    def compose(self) -> ComposeResult:
        settings = self.settings
        yield Header(show_clock=False)
        with VerticalScroll(id="settings-form"):
            for name, label, placeholder in self.text_fields:
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
        self.sub_title = str(self.path) if self.host_paths else "for this browser tab"
        self.query_one(f"#{self.text_fields[0][0]}", Input).focus()

    def _collect(self) -> dict[str, Any]:
        # Fields the form does not show (the save folder) keep their values.
        data: dict[str, Any] = {"saves_dir": self.settings.saves_dir}
        if not self.host_paths:
            data["model_path"] = self.settings.model_path
        for name, _, _ in self.text_fields:
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
        try:
            settings = Settings.model_validate(self._collect())
        except ValidationError as exc:
            self.notify(first_error(exc, "settings"), title="Not saved", severity="error")
            return
        if settings.model_path is not None:
            problem = model_file_problem(settings.model_path.expanduser())
            if problem is not None:
                self.notify(problem, title="Not saved", severity="error")
                return
        self.post_message(self.Saved(settings))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.app.pop_screen()
