"""Messages the play screen's workers post (a worker never touches a widget)."""

from __future__ import annotations

from textual.message import Message

from game.controller import GameController, TurnOutcome
from game.summarizer import BackgroundOutcome


class GameReady(Message):
    """The model is loaded and the game built (new, or restored from a save)."""

    def __init__(self, game: GameController) -> None:
        super().__init__()
        self.game = game


class GameFailed(Message):
    """The game could not start; ``error`` is one line."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReplyText(Message):
    """More reply text, batched."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplyRewind(Message):
    """The reply so far is now exactly ``text`` (an option block is being written again)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReadingProgress(Message):
    """The model has read ``done`` of the ``total`` prompt tokens it reads this turn."""

    def __init__(self, done: int, total: int, elapsed: float) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.elapsed = elapsed


class TurnDone(Message):
    """A turn finished (and was saved, unless ``outcome.save_problem`` says otherwise)."""

    def __init__(self, outcome: TurnOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class TurnFailed(Message):
    """A turn did not happen: the game is as it was. ``action`` was the player's (to give it
    back to the action line); ``cancelled`` when the player stopped it before the reply."""

    def __init__(self, error: str, action: str | None, *, cancelled: bool = False) -> None:
        super().__init__()
        self.error = error
        self.action = action
        self.cancelled = cancelled


class StoryChanged(Message):
    """Undo, redo or edit changed the story; ``note`` is what to tell the player, ``action``
    text to put in the action line (edit)."""

    def __init__(self, note: str, action: str | None = None) -> None:
        super().__init__()
        self.note = note
        self.action = action


class BackgroundStarted(Message):
    """The model began writing the story so far while the player reads."""


class BackgroundDone(Message):
    """Background work ended: ``outcome`` is what it did (None when there was nothing to do or
    the game was busy), ``error`` one line when it failed unexpectedly."""

    def __init__(self, outcome: BackgroundOutcome | None, error: str | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.error = error
