"""The start screen: every scenario found, a filter, and continue / load near the top."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, OptionList
from textual.widgets.option_list import Option

from game.catalog import ScenarioEntry, user_packs_dir
from game.imports.library import import_path, pickup, with_new_scenarios
from game.textsafety import for_terminal


def _matches(entry: ScenarioEntry, query: str) -> bool:
    scenario = entry.scenario
    haystack = " ".join(
        [scenario.id, scenario.title, scenario.description, entry.pack_title, *scenario.tags]
    ).casefold()
    return all(word in haystack for word in query.casefold().split())


def _label(entry: ScenarioEntry) -> Text:
    scenario = entry.scenario
    text = Text()
    # Pack text is shown with its escapes visible (issue 11).
    text.append(for_terminal(scenario.title, one_line=True), style="bold")
    text.append(for_terminal(f"  ({entry.pack_title})", one_line=True), style="dim")
    if scenario.tags:
        tags = for_terminal("  " + " ".join(f"#{tag}" for tag in scenario.tags), one_line=True)
        text.append(tags, style="italic")
    text.append(f"\n{for_terminal(scenario.description)}\n")
    return text


class StartScreen(Screen[None]):
    """Pick a scenario, continue the newest save, or load another.

    Args:
        entries: The scenarios to offer.
        continue_name: The name of the newest save, for the Continue button; None hides it.
    """

    DEFAULT_CSS = """
    #start-actions {
        height: auto;
        padding: 0 1;
    }
    #start-actions Button {
        margin-right: 1;
    }
    #filter {
        margin: 0 1;
    }
    #scenarios {
        height: 1fr;
        margin: 0 1;
    }
    """

    BINDINGS = [
        Binding("ctrl+o", "app.load", "Load"),
        Binding("f2", "app.settings", "Settings"),
        Binding("ctrl+f", "focus_filter", "Filter"),
    ]

    class ScenarioChosen(Message):
        """Start a new game of ``entry``."""

        def __init__(self, entry: ScenarioEntry) -> None:
            super().__init__()
            self.entry = entry

    class ContinueChosen(Message):
        """Go on with the newest save."""

    def __init__(self, entries: list[ScenarioEntry], continue_name: str | None = None) -> None:
        super().__init__()
        self.entries = entries
        self.continue_name = continue_name

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="start-actions"):
            yield Button("Continue", id="continue", variant="primary")
            yield Button("Load…", id="load")
            yield Button("Settings", id="settings")
        yield Input(
            placeholder="Filter scenarios by title, pack, tag…",
            id="filter",
        )
        yield OptionList(id="scenarios")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Metharme Adventure"
        self.sub_title = "choose a scenario"
        button = self.query_one("#continue", Button)
        if self.continue_name is None:
            button.display = False
        else:
            # A Text, not a string: a save name is never read as Rich markup (issue 11).
            button.label = Text(f"Continue: {for_terminal(self.continue_name, one_line=True)}")
        self._fill("")
        # Typing narrows the list at once; Enter starts the highlighted scenario.
        self.query_one("#filter", Input).focus()
        self._imported(pickup(user_packs_dir()))

    def _imported(self, notices: list[str]) -> None:
        """Show what an import did; offer the scenarios it added (here and in the app)."""
        for notice in notices:
            failed = notice.startswith("Could not")
            self.notify(notice, severity="error" if failed else "information", timeout=10)
        if any(not notice.startswith("Could not") for notice in notices):
            self.entries = with_new_scenarios(self.entries)
            if hasattr(self.app, "entries"):
                self.app.entries = self.entries
            self._fill(self.query_one("#filter", Input).value)

    def _fill(self, query: str) -> None:
        options = self.query_one("#scenarios", OptionList)
        options.clear_options()
        for index, entry in enumerate(self.entries):
            if _matches(entry, query):
                options.add_option(Option(_label(entry), id=str(index)))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        # A path to a card, lorebook or story typed (or pasted) here is imported.
        notice = import_path(event.value)
        if notice is not None:
            event.input.value = ""
            self._imported([notice])
            return
        options = self.query_one("#scenarios", OptionList)
        if options.highlighted is None:
            self.notify("No scenario matches the filter.", severity="warning")
            return
        option = options.get_option_at_index(options.highlighted)
        if option.id is not None:
            self.post_message(self.ScenarioChosen(self.entries[int(option.id)]))

    def key_down(self) -> None:
        """Arrow keys in the filter move through the list."""
        if self.focused is self.query_one("#filter", Input):
            self.query_one("#scenarios", OptionList).action_cursor_down()

    def key_up(self) -> None:
        if self.focused is self.query_one("#filter", Input):
            self.query_one("#scenarios", OptionList).action_cursor_up()

    @on(OptionList.OptionSelected, "#scenarios")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.post_message(self.ScenarioChosen(self.entries[int(event.option.id)]))

    @on(Button.Pressed, "#continue")
    def _continue(self) -> None:
        self.post_message(self.ContinueChosen())

    @on(Button.Pressed, "#load")
    def _load(self) -> None:
        self.app.action_load()  # type: ignore[attr-defined]

    @on(Button.Pressed, "#settings")
    def _settings(self) -> None:
        self.app.action_settings()  # type: ignore[attr-defined]

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()
