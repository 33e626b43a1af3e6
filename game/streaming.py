"""Find stop strings in streamed text without ever showing half of one."""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Accumulate streamed text, stopping at the first stop string.

    Text that could be the start of a stop string is held back until the next piece shows
    whether it is, so a player never sees ``<|us`` flash on screen.
    """

    def __init__(self, stops: Sequence[str]):
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""
        self.text = ""
        self.stopped = False

    @property
    def held(self) -> str:
        """Text received but not yet released."""
        return self._held

    def feed(self, piece: str) -> str:
        """Take the next piece; return the text now safe to show ("" once stopped)."""
        if self.stopped:
            return ""
        buffer = self._held + piece
        hits = [index for index in (buffer.find(stop) for stop in self._stops) if index >= 0]
        if hits:
            released = buffer[: min(hits)]
            self._held = ""
            self.stopped = True
        else:
            keep = self._partial_stop_length(buffer)
            released = buffer[: len(buffer) - keep]
            self._held = buffer[len(buffer) - keep :]
        self.text += released
        return released

    def flush(self) -> str:
        """Release the held text: the stream ended without completing a stop string."""
        released, self._held = self._held, ""
        self.text += released
        return released

    def _partial_stop_length(self, buffer: str) -> int:
        """Length of the longest end of ``buffer`` that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if stop.startswith(buffer[-size:]):
                    longest = size
                    break
        return longest
