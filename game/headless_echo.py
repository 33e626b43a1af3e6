"""What a plain terminal shows of a reply while it is written: the story text as it comes.

A terminal cannot take text back, so two things are not echoed as they come: the option lines
(the game lists them numbered once the reply is done) and whatever comes after a rewind (an
option pass writing the options again after the first pass fell short; the TUI redraws
instead). Story text held back meanwhile (after a line that looked like an option, in a free
reply) is shown when the reply is done: :meth:`ReplyEcho.finish`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Where an option block starts: a line beginning "- " (the guided grammar's form).
_OPTION_START = re.compile(r"(?:^|\n)[ \t]*- ")
# A tail that may be becoming one: a line holding only "-" so far.
_MAYBE_OPTION = re.compile(r"(?:^|\n)[ \t]*-$")


class ReplyEcho:
    """Echo a reply's text, piece by piece, up to its option block.

    Args:
        write: Shows text on the terminal.
    """

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self.text = ""
        self.shown = 0
        self.stopped = False

    def feed(self, piece: str) -> None:
        """A piece of the reply as the model wrote it."""
        if self.stopped:
            return
        self.text += piece
        options = _OPTION_START.search(self.text)
        if options is not None:
            self._show_to(len(self.text[: options.start()].rstrip()))
            self.stopped = True
            return
        # Space at the end waits for what follows it: it may be the gap before the options.
        kept = self.text.rstrip()
        maybe = _MAYBE_OPTION.search(kept)
        self._show_to(len(kept) if maybe is None else len(kept[: maybe.start()].rstrip()))

    def rewind(self, _text: str) -> None:
        """The reply was taken back to ``_text`` for another pass: echo nothing more."""
        self.stopped = True

    def finish(self, narrative: str) -> None:
        """The reply is done and its story text is ``narrative``: show what of it was held
        back. When the reply was trimmed below what was shown (cut to its last sentence),
        nothing more is shown."""
        self.stopped = True
        target = narrative.rstrip()
        echoed = self.text[: self.shown]
        if target.startswith(echoed) and len(target) > len(echoed):
            self.write(target[len(echoed) :])
            self.shown = len(target)
            self.text = target

    def _show_to(self, end: int) -> None:
        if end > self.shown:
            self.write(self.text[self.shown : end])
            self.shown = end
