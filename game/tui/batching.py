"""Batch streamed text so a fast model does not flood the event loop with one message a token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TextBatcher:
    """Collects text from the worker thread and hands it on at most every ``interval`` seconds.

    Args:
        deliver: Called with the collected text (from the thread that adds it).
        interval: The least time between two deliveries.
        clock: The time source, for tests.
    """

    def __init__(
        self,
        deliver: Callable[[str], None],
        interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._deliver = deliver
        self._interval = interval
        self._clock = clock
        self._pending: list[str] = []
        self._last = clock()
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._pending.append(text)
            if self._clock() - self._last < self._interval:
                return
        self.flush()

    def flush(self) -> None:
        """Deliver whatever is pending now."""
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            self._last = self._clock()
        if text:
            self._deliver(text)
