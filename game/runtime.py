"""Wire settings, a model and a scenario into a playable session."""

from __future__ import annotations

import logging

from game.backends.base import Backend
from game.config import Settings, resolve_model_path
from game.kvstore import KvStore
from game.kvstore import default_folder as default_kv_folder
from game.prompt import (
    PromptFormat,
    detect_format,
    get_format,
)
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
        n_threads_batch=settings.n_threads_batch,
        kv_store=kv_store_for(settings),
        seed=settings.seed,
    )


def kv_store_for(settings: Settings) -> KvStore | None:
    """The stored KV caches' folder, bounded as set; None when the setting turns it off."""
    if settings.kv_store_mb <= 0:
        return None
    return KvStore(default_kv_folder(), settings.kv_store_mb * 1024 * 1024)


def _detected(backend: Backend) -> tuple[str, str]:
    # Only the llama.cpp backend knows its vocabulary; the others answer None.
    return detect_format(backend.chat_template, getattr(backend, "vocabulary", None))


def game_model_info(settings: Settings) -> ModelInfo:
    """What a save records of the model the settings name: a local file, or a server's model."""
    if settings.server_url:
        from game.backends.remote import remote_model_info

        return remote_model_info(settings)
    return model_info(resolve_model_path(settings))


def choose_format(settings: Settings, backend: Backend) -> PromptFormat:
    """The player's format if set, else the one the model's chat template names, else Metharme
    (a LLaMA-vocabulary model without a template is taken to be Metharme or Pygmalion-2)."""
    if settings.prompt_format:
        return get_format(settings.prompt_format)
    name, why = _detected(backend)
    log.info("prompt format %s (%s)", name, why)
    return get_format(name)


def format_status(fmt: PromptFormat, backend: Backend) -> str:
    """The format in use and why, for status lines: ``metharme (no chat template, LLaMA
    vocabulary)``; a format that is not the detected one was set by the player or the save."""
    name, why = _detected(backend)
    return f"{fmt.name} ({why})" if name == fmt.name else f"{fmt.name} (set)"


def new_session(settings: Settings, scenario: Scenario, backend: Backend) -> Session:
    """A fresh game of ``scenario`` on ``backend``."""
    return Session(
        scenario,
        backend,
        choose_format(settings, backend),
        sampling=settings.sampling,
        choice_mode=settings.choice_mode,
        seed=settings.seed,
        summaries=settings.summaries,
    )
