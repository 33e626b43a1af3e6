"""How far prompt reading has come, and how long the rest will take: for the front ends.

The backend reports (tokens read, tokens to read) after each batch; this turns that into a
fraction, a rate and an estimate of the time left, and one line of text, without any UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ReadingProgress:
    """The progress of one prompt read.

    Args:
        clock: Seconds, monotonic (a parameter so tests can drive it).
    """

    clock: Callable[[], float] = time.perf_counter
    done: int = 0
    total: int = 0
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def update(self, done: int, total: int) -> None:
        """Take a report from the backend."""
        self.done, self.total = done, total

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total > 0 else 0.0

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    @property
    def left_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first batch is read."""
        elapsed = self.elapsed_s
        if self.done <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / self.done

    def line(self) -> str:
        """``reading the story: 256/1164 tokens (22%), about 14 s left``."""
        text = f"reading the story: {self.done}/{self.total} tokens ({self.fraction:.0%})"
        left = self.left_s
        if left is not None and self.done < self.total:
            text += f", about {format_seconds(left)} left"
        return text


def format_seconds(seconds: float) -> str:
    """``4 s``, ``1 min 05 s``."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"
