"""The "reading the story" bar: shown while the model reads a long prompt, with the time left.

The turn worker (a thread) gets a progress callback from :meth:`ReadingBar.callback`; each
report is posted to the bar as a message, so the bar is only ever touched on the UI thread.
The callback also carries the player's Escape back to the backend: it returns False once the
stop event is set, and the backend cancels between batches.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Label, ProgressBar

from game.backends.base import ProgressCallback
from game.progress import ReadingProgress, format_seconds

# Prompts shorter than this are read before the bar could be seen: it stays hidden.
MIN_SHOWN_TOKENS = 64


class ReadingBar(Horizontal):
    """A one-line bar: "reading the story", progress, and about how long is left."""

    DEFAULT_CSS = """
    ReadingBar {
        height: 1;
        padding: 0 1;
        display: none;
    }
    ReadingBar.-reading {
        display: block;
    }
    ReadingBar > Label {
        width: auto;
        margin-right: 1;
    }
    ReadingBar > ProgressBar {
        width: 1fr;
    }
    ReadingBar > ProgressBar > Bar {
        width: 1fr;
    }
    """

    class Progress(Message):
        """The backend has read ``done`` of ``total`` prompt tokens (``total == done`` at the
        end, ``total == 0`` to hide the bar)."""

        def __init__(self, done: int, total: int) -> None:
            super().__init__()
            self.done = done
            self.total = total

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._reading = ReadingProgress()

    def compose(self) -> ComposeResult:
        yield Label("reading the story", id="reading-label")
        yield ProgressBar(total=100, show_eta=False, id="reading-progress")
        yield Label("", id="reading-left")

    def callback(self, should_stop: Callable[[], bool]) -> ProgressCallback:
        """A progress callback for the worker thread: posts each report here and asks the
        backend to cancel once ``should_stop()`` is True."""

        def on_progress(done: int, total: int) -> bool:
            stop = should_stop()
            self.post_message(self.Progress(0, 0) if stop else self.Progress(done, total))
            return not stop

        return on_progress

    def hide(self) -> None:
        self.remove_class("-reading")
        self._reading = ReadingProgress()

    def on_reading_bar_progress(self, message: ReadingBar.Progress) -> None:
        message.stop()
        if message.total <= 0 or message.done >= message.total:
            self.hide()
            return
        if message.total < MIN_SHOWN_TOKENS:
            return
        if not self.has_class("-reading"):
            self._reading = ReadingProgress()
            self.add_class("-reading")
        self._reading.update(message.done, message.total)
        self.query_one(ProgressBar).update(total=message.total, progress=message.done)
        left = self._reading.left_s
        self.query_one("#reading-left", Label).update(
            f"about {format_seconds(left)} left (Escape stops)" if left is not None else ""
        )
