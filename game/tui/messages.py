"""Messages the generation worker posts to the play screen (the worker never touches widgets)."""

from __future__ import annotations

from textual.message import Message

from game.saves import SaveSlot
from game.session import Session, TurnResult


class GameReady(Message):
    """The model is loaded and the session built (new, or restored from a save)."""

    def __init__(self, session: Session, slot: SaveSlot | None, new_game: bool) -> None:
        super().__init__()
        self.session = session
        self.slot = slot
        self.new_game = new_game


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


class TurnDone(Message):
    """A turn finished; ``saved`` is the autosave's problem, or None when it was saved."""

    def __init__(self, result: TurnResult, save_problem: str | None) -> None:
        super().__init__()
        self.result = result
        self.save_problem = save_problem


class TurnFailed(Message):
    """The model failed (or the game could not start); the session is unchanged."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
