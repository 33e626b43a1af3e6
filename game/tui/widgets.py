"""The play screen's widgets."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


class TurnView(Static):
    """One exchange: the player's action, then the reply (streamed, then final)."""

    def __init__(self, action: str, reply: str = "", *, cut_short: bool = False) -> None:
        super().__init__(classes="turn")
        self.action = action
        self.reply = reply
        self.cut_short = cut_short
        self.streaming = False

    def render(self) -> Text:
        text = Text()
        text.append(f"> {self.action}\n", style="bold")
        text.append(self.reply or ("…" if self.streaming else ""))
        if self.cut_short:
            text.append("\n(cut short: ctrl+r writes it again)", style="italic dim")
        return text

    def set_reply(self, reply: str, *, cut_short: bool = False, streaming: bool = False) -> None:
        self.reply = reply
        self.cut_short = cut_short
        self.streaming = streaming
        self.refresh(layout=True)


class StoryView(VerticalScroll):
    """The story so far, newest at the bottom."""

    def follow(self) -> None:
        """Keep the newest text in view unless the player scrolled up to read."""
        if self.max_scroll_y - self.scroll_y <= 3:
            self.scroll_end(animate=False)


class ChoiceList(OptionList):
    """The current choices, numbered."""

    class Picked(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def show_choices(self, choices: list[str]) -> None:
        self.clear_options()
        self.add_options(
            [Option(f"{n}. {choice}", id=str(n - 1)) for n, choice in enumerate(choices, 1)]
        )
        if choices:
            self.highlighted = 0
        self.display = bool(choices)

    def _on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Picked(int(event.option.id)))


class ActionInput(Input):
    """The free-text action line. On an empty line a digit picks that choice at once."""

    class PickDigit(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def _on_key(self, event: events.Key) -> None:
        if not self.value and event.character and event.character in "123456789":
            event.prevent_default()
            event.stop()
            self.post_message(self.PickDigit(int(event.character) - 1))


class StatusLine(Static):
    """Model, context use, speed of the last reply, save state."""
