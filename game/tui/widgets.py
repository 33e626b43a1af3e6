"""The play screen's widgets, each with its own look."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


class TurnView(Static):
    """One exchange: the player's action, then the reply (streamed, then final)."""

    DEFAULT_CSS = """
    TurnView {
        margin: 0 0 1 0;
    }
    """

    reply: reactive[str] = reactive("", layout=True)
    cut_short: reactive[bool] = reactive(False, layout=True)
    streaming: reactive[bool] = reactive(False)

    def __init__(
        self, action: str, reply: str = "", *, cut_short: bool = False, streaming: bool = False
    ) -> None:
        super().__init__(classes="turn")
        self.action = action
        self.set_reactive(TurnView.reply, reply)
        self.set_reactive(TurnView.cut_short, cut_short)
        self.set_reactive(TurnView.streaming, streaming)

    def render(self) -> Text:
        text = Text()
        text.append(f"> {self.action}\n", style="bold")
        text.append(self.reply or ("…" if self.streaming else ""))
        if self.cut_short:
            text.append("\n(cut short: ctrl+r writes it again)", style="italic dim")
        return text

    def restart(self) -> None:
        """The reply is being written again."""
        self.reply, self.cut_short, self.streaming = "", False, True

    def finish(self, reply: str, *, cut_short: bool) -> None:
        """The reply as kept."""
        self.reply, self.cut_short, self.streaming = reply, cut_short, False


class StoryView(VerticalScroll):
    """The story so far, newest at the bottom; it stays there unless the player scrolls up."""

    DEFAULT_CSS = """
    StoryView {
        height: 1fr;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._at_end = True

    def follow(self) -> None:
        """Keep the newest text in view unless the player scrolled up to read."""
        if self.max_scroll_y - self.scroll_y <= 3:
            self.scroll_end(animate=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._at_end = self.max_scroll_y - new <= 3

    def on_resize(self, event: events.Resize) -> None:
        # A smaller window must not leave the newest text below the fold.
        if self._at_end:
            self.call_after_refresh(self.scroll_end, animate=False)


class ChoiceList(OptionList):
    """The current choices, numbered."""

    DEFAULT_CSS = """
    ChoiceList {
        height: auto;
        max-height: 9;
        border: round $accent;
        margin: 0 1;
    }
    """

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

    DEFAULT_CSS = """
    ActionInput {
        margin: 0 1;
    }
    """

    class PickDigit(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def _on_key(self, event: events.Key) -> None:
        if not self.value and event.character and event.character in "123456789":
            event.prevent_default()
            event.stop()
            self.post_message(self.PickDigit(int(event.character) - 1))


class StatusLine(Widget):
    """What the game is doing now (first, so a narrow window keeps it), what the model does
    while the player reads (the story so far), then the model and its prompt format, context
    use, the speed of the last reply, and whether it is saved."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        background: $boost;
    }
    """

    activity: reactive[str] = reactive("")
    memory: reactive[str] = reactive("")
    model: reactive[str] = reactive("")
    context: reactive[str] = reactive("")
    speed: reactive[str] = reactive("")
    saved: reactive[str] = reactive("")

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        doing = [part for part in (self.activity, self.memory) if part]
        if doing:
            text.append(" · ".join(doing), style="bold")
        facts = [fact for fact in (self.model, self.context, self.speed, self.saved) if fact]
        if facts:
            if doing:
                text.append(" · ")
            text.append(" · ".join(facts))
        return text
