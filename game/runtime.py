"""Wire settings, a model and a scenario into a playable session."""

from __future__ import annotations

import logging

from game.backends.base import Backend
from game.config import Settings, resolve_model_path
from game.prompt import DEFAULT_FORMAT, PromptFormat, format_for_chat_template, get_format
from game.saves import ModelInfo, model_info
from game.scenario import Scenario
from game.session import Session

log = logging.getLogger(__name__)


def open_backend(settings: Settings) -> Backend:
    """Load the configured model (the embedded one when none is set) with llama.cpp.

    Raises:
        ConfigError: when no model is configured and the embedded one is missing.
        BackendError: when the model file is missing, not a GGUF, or fails to load.
    """
    if settings.server_url:
        from game.backends.remote import open_remote

        return open_remote(settings)
    # Imported here so that commands that never load a model (validate, saves) never pay for
    # loading llama.cpp's shared library.
    from game.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        resolve_model_path(settings),
        n_ctx=settings.n_ctx,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.n_threads,
        seed=settings.seed,
    )


def game_model_info(settings: Settings) -> ModelInfo:
    """What a save records of the model the settings name: a local file, or a server's model."""
    if settings.server_url:
        from game.backends.remote import remote_model_info

        return remote_model_info(settings)
    return model_info(resolve_model_path(settings))


def choose_format(settings: Settings, backend: Backend) -> PromptFormat:
    """The player's format if set, else the one the model's chat template names, else Metharme."""
    if settings.prompt_format:
        return get_format(settings.prompt_format)
    guessed = format_for_chat_template(backend.chat_template)
    fmt = get_format(guessed or DEFAULT_FORMAT)
    log.info("prompt format %s (%s)", fmt.name, "from chat template" if guessed else "default")
    return fmt


def new_session(settings: Settings, scenario: Scenario, backend: Backend) -> Session:
    """A fresh game of ``scenario`` on ``backend``."""
    return Session(
        scenario,
        backend,
        choose_format(settings, backend),
        sampling=settings.sampling,
        choice_mode=settings.choice_mode,
        seed=settings.seed,
    )
