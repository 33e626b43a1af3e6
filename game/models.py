"""The models a process has loaded, shared by its games and closed only when no game uses them.

A settings change never pulls a model out from under a game in play: the host keeps the model
each game holds until that game lets it go, and loads the new one for the next game.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from game.backends.base import Backend
from game.config import Settings, model_key

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], Backend]


@dataclass
class _Loaded:
    key: Hashable
    backend: Backend
    users: int = 0


def close_backend(backend: Backend) -> None:
    """Free a backend's model now, when it can be closed (the scripted one cannot)."""
    close = getattr(backend, "close", None)
    if close is not None:
        close()


class ModelHost:
    """Loads a model for each game and shares it while the settings that load it are the same.

    Args:
        factory: Loads a model for the settings (the llama.cpp backend; a scripted one in tests).
    """

    def __init__(self, factory: BackendFactory):
        self._factory = factory
        # One lock for all of it: loads are rare and must not run twice at once anyway.
        self._lock = threading.Lock()
        self._current: _Loaded | None = None
        self._retired: list[_Loaded] = []

    def acquire(self, settings: Settings) -> Backend:
        """The model for ``settings``, loaded when the current one was loaded for others.
        Every acquire is paired with a :meth:`release` when the game ends.

        Raises:
            BackendError, ConfigError: when the model cannot be loaded.
        """
        key = model_key(settings)
        with self._lock:
            current = self._current
            if current is None or current.key != key:
                backend = self._factory(settings)
                if current is not None:
                    self._retire(current)
                current = self._current = _Loaded(key, backend)
            current.users += 1
            return current.backend

    def release(self, backend: Backend) -> None:
        """A game is done with ``backend``; a replaced model is closed when its last game ends."""
        with self._lock:
            for loaded in [self._current, *self._retired]:
                if loaded is not None and loaded.backend is backend:
                    loaded.users = max(loaded.users - 1, 0)
                    if loaded is not self._current and loaded.users == 0:
                        self._retired.remove(loaded)
                        log.info("closing %s: no game uses it now", backend.name)
                        close_backend(backend)
                    return

    def _retire(self, loaded: _Loaded) -> None:
        if loaded.users == 0:
            close_backend(loaded.backend)
        else:
            self._retired.append(loaded)

    def users(self, backend: Backend) -> int:
        """How many games hold ``backend`` (for tests and the log)."""
        with self._lock:
            for loaded in [self._current, *self._retired]:
                if loaded is not None and loaded.backend is backend:
                    return loaded.users
        return 0

    def close(self) -> None:
        """Close every model (the process is ending)."""
        with self._lock:
            for loaded in [self._current, *self._retired]:
                if loaded is not None:
                    close_backend(loaded.backend)
            self._current, self._retired = None, []
