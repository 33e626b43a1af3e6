"""Send llama.cpp's own log through Python logging, so it never lands raw on a terminal or TUI."""

from __future__ import annotations

import ctypes
import io
import logging
import threading

import llama_cpp

log = logging.getLogger("game.llama_cpp")

# ggml_log_level as ggml.h numbers it now: NONE, DEBUG, INFO, WARN, ERROR, then CONT, which
# continues the previous message. (llama-cpp-python's _logger.py still has an older order.)
_LEVELS = {
    0: logging.DEBUG,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
_CONT = 5


class _LineJoiner:
    """llama.cpp logs in fragments; join them into lines before handing them to logging."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text = ""
        self._level = logging.DEBUG

    def add(self, level: int, text: str) -> None:
        with self._lock:
            if level != _CONT and not self._text:
                self._level = _LEVELS.get(level, logging.DEBUG)
            self._text += text
            *lines, self._text = self._text.split("\n")
        for line in lines:
            if line.strip():
                log.log(self._level, "%s", line.rstrip())


_joiner = _LineJoiner()


@llama_cpp.llama_log_callback
def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    _joiner.add(level, text.decode("utf-8", errors="replace"))


def install() -> None:
    """Route llama.cpp's log through :data:`log` (idempotent). The callback stays referenced at
    module level, as ctypes requires for as long as C may call it."""
    llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))


class LoggingStream(io.TextIOBase):
    """A text stream that writes each line to a logger: for llama-cpp-python's own prints."""

    def __init__(self, logger: logging.Logger, level: int = logging.DEBUG):
        self._logger = logger
        self._level = level
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self._logger.log(self._level, "%s", line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._buffer.strip():
            self._logger.log(self._level, "%s", self._buffer.rstrip())
        self._buffer = ""
