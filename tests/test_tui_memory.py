"""Memory in the TUI, through the app as the command line builds it: the memory screen (F6),
the context view (F7), and the story so far written in the background while the player reads.
The scripted backend answers a summary prompt with a summary (see tests/test_memory.py)."""

from __future__ import annotations

import time

from textual.widgets import DataTable, Switch, TextArea

from game.saves import load
from game.tui.background import WRITING
from game.tui.context_view import ContextScreen
from game.tui.memory import MemoryScreen
from game.tui.play import PlayScreen
from game.tui.widgets import StatusLine
from tests.test_memory import SUMMARY
from tests.test_tui import settle
from tests.test_tui_flows import app_for, notes, saves_folder, wait_until

SIZE = (110, 36)
# With the long replies below, the window slides after a few turns.
SMALL = ["play", "--n-ctx", "1600"]
FILLER = "Rain drums on the roof and the lamp flickers as the wind moans in the hall. " * 5


def reply_or_summary(prompt: str) -> str:
    """A turn's reply (long, so that the window slides soon), or a summary when the prompt
    asks for one."""
    if "Write the new story so far." in prompt:
        return SUMMARY
    turn = prompt.count("<|model|>")
    return f"Room {turn} is dim. {FILLER}\n\n- North.\n- South.\n- Wait."


def prompts(backend, kind: str = "turn") -> list[str]:
    return [backend.detokenize(call.prompt) for call in backend.calls if call.kind == kind]


def status_text(app) -> str:
    return str(app.screen.query_one(StatusLine).render())


async def open_memory(pilot) -> MemoryScreen:
    await pilot.press("f6")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, MemoryScreen), screen
    return screen


def type_into(screen: MemoryScreen, field: str, text: str) -> None:
    screen.query_one(f"#{field}", TextArea).load_text(text)


async def play_until_slide(pilot, limit: int = 30) -> None:
    """Pick the first choice until a turn has left the window."""
    screen = pilot.app.screen
    for _ in range(limit):
        if screen.session.window_start > 0:
            return
        await pilot.press("1")
        await settle(pilot)
    raise AssertionError("the window never slid")


def slow_summaries(box: list, slow: dict | None = None) -> object:
    """Replies: a turn at once, a summary slowly (10 s) while ``slow["on"]``; ``box`` gets the
    list of backends the app made."""

    def replies(prompt: str) -> str:
        summary = "Write the new story so far." in prompt
        on = slow is None or slow["on"]
        box[0][0].token_delay_s = 0.05 if summary and on else 0.0
        return f"{SUMMARY} {FILLER}" if summary else reply_or_summary(prompt)

    return replies


async def play_to_first_slide(pilot, limit: int = 30) -> None:
    """Pick the first choice until a turn slides the window; back as soon as it is done (the
    summary after it is being written)."""
    screen = pilot.app.screen
    for _ in range(limit):
        if screen.session.window_start > 0:
            return
        await pilot.press("1")
        await wait_until(pilot, lambda: not screen.busy)
        assert screen.session.turn > 1, notes(pilot.app)
    raise AssertionError("the window never slid")


async def test_memory_and_note_saved_on_the_memory_screen_are_in_the_next_prompt():
    app, made = app_for(["play", "--name", "remember"], replies=reply_or_summary)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_memory(pilot)
        type_into(screen, "memory", "Ann is a locksmith.\nThe key is brass.")
        type_into(screen, "note", "Keep it eerie.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PlayScreen)
        assert "Memory saved: the next turn reads it." in notes(app)
        await pilot.press("1")
        await settle(pilot)
        prompt = prompts(made[0])[-1]
        assert "Ann is a locksmith.\nThe key is brass." in prompt
        assert "[Author's note: Keep it eerie.]" in prompt
        # The screen shows what the game holds when opened again; Escape changes nothing.
        screen = await open_memory(pilot)
        assert screen.query_one("#note", TextArea).text == "Keep it eerie."
        type_into(screen, "note", "Something else entirely.")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PlayScreen)
        assert app.screen.session.memory.note == "Keep it eerie."


async def test_a_memory_too_long_is_one_line_and_the_screen_keeps_the_text():
    app, _ = app_for(["play"], replies=reply_or_summary)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_memory(pilot)
        type_into(screen, "memory", "x" * 4001)
        type_into(screen, "note", "A note.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert screen.query_one("#memory", TextArea).text == "x" * 4001
        refused = [note for note in notes(app) if note.startswith("Not saved")]
        assert refused == ["Not saved: The memory is 4001 characters long; it may have 4000."]
        # Too many tokens for this context: one line too.
        type_into(screen, "memory", "word " * 300)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert any("fit a context of" in note and "\n" not in note for note in notes(app))
        # Shortened, it is kept (the note with it).
        type_into(screen, "memory", "A short memory.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, PlayScreen)
        memory = app.screen.session.memory
        assert (memory.memory, memory.note) == ("A short memory.", "A note.")


async def test_summaries_switched_off_are_not_written_and_on_again_are():
    app, made = app_for(SMALL, replies=reply_or_summary)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_memory(pilot)
        screen.query_one(Switch).value = False
        await pilot.press("ctrl+s")
        await settle(pilot)
        session = app.screen.session
        assert not session.memory.auto_summary
        await play_until_slide(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert prompts(made[0], "aside") == []
        assert SUMMARY not in prompts(made[0])[-1]
        screen = await open_memory(pilot)
        assert "summaries are off" in str(screen.query_one("#summary-label").render())
        screen.query_one(Switch).value = True
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert session.memory.auto_summary
        assert len(prompts(made[0], "aside")) >= 1
        await pilot.press("1")
        await settle(pilot)
        assert SUMMARY in prompts(made[0])[-1]


async def test_the_story_so_far_is_written_after_the_window_slides_and_read_next_turn():
    app, made = app_for(SMALL, replies=reply_or_summary)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await play_until_slide(pilot)
        session = app.screen.session
        through = session.window_start
        assert session.memory.active(through).through == through
        assert f"story so far: {through} turn" in status_text(app)
        await pilot.press("1")
        await settle(pilot)
        assert SUMMARY in prompts(made[0])[-1]
        # The player may rewrite it; it shows which turns it covers.
        screen = await open_memory(pilot)
        label = str(screen.query_one("#summary-label").render())
        assert f"covers turns 1–{session.window_start}" in label
        type_into(screen, "summary", "Ann came in from the rain.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert "The story so far:\nAnn came in from the rain." in prompts(made[0])[-1]


async def test_the_context_view_lists_the_parts_of_the_next_prompt_with_their_tokens():
    app, _ = app_for(SMALL, replies=reply_or_summary)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await play_until_slide(pilot)
        session = app.screen.session
        expected = session.context_view("Open the door.")
        app.screen.query_one("#action").value = "Open the door."
        await pilot.press("f7")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ContextScreen)
        table = screen.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert [row[:3] for row in rows[:-1]] == [
            [part.kind, part.label, str(part.tokens)] for part in expected
        ]
        assert [row[0] for row in rows][:3] == ["system", "summary", "exchange"]
        assert rows[-2][0] == "action" and rows[-2][3] == "Open the door."
        assert rows[1][3].startswith(SUMMARY[:40])  # its text, not the header
        assert rows[-1][1:3] == ["total", str(sum(part.tokens for part in expected))]
        facts = str(screen.query_one("#context-facts").render())
        left = session.window_start
        assert f"turns 1–{left} have left the window" in facts.lower()
        assert f"covers all of them (turns 1–{left})" in facts
        assert f"of {session.budget} for the prompt" in facts and "context 1600" in facts
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PlayScreen)
        assert app.screen.query_one("#action").value == "Open the door."


async def test_acting_while_the_story_so_far_is_written_plays_the_turn_at_once():
    slow = {"on": True}
    box: list = []
    app, made = app_for(SMALL, replies=slow_summaries(box, slow))
    box.append(made)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        session = screen.session
        await play_to_first_slide(pilot)
        await wait_until(pilot, lambda: WRITING in status_text(app))
        assert screen.game.background_running
        turns, started = session.turn, time.monotonic()
        await pilot.press("1")
        await wait_until(pilot, lambda: session.turn == turns + 1, timeout=5)
        assert time.monotonic() - started < 3  # the summary alone takes 10 s
        assert SUMMARY not in prompts(made[0])[-1]  # it went on without the story so far
        assert not screen.busy and screen.query_one("#action").has_focus
        # The summary is written again once the player reads: this time quickly.
        slow["on"] = False
        await settle(pilot)
        assert session.memory.active(session.window_start) is not None
        assert "story so far:" in status_text(app)
        await pilot.press("1")
        await settle(pilot)
        assert SUMMARY in prompts(made[0])[-1]


async def test_quitting_while_the_story_so_far_is_written_does_not_wait_for_it():
    box: list = []
    app, made = app_for([*SMALL, "--name", "quit-now"], replies=slow_summaries(box))
    box.append(made)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await play_to_first_slide(pilot)
        await wait_until(pilot, lambda: WRITING in status_text(app))
        turns = screen.session.turn
        started = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - started < 3
    assert load(saves_folder() / "quit-now.json").turn_count == turns


async def test_saving_the_memory_while_a_reply_is_written_is_refused_in_one_line():
    app, _ = app_for(["play"], replies=("word " * 2000,), token_delay_s=0.005)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, PlayScreen) and app.screen.busy)
        play = app.screen
        screen = await open_memory(pilot)
        type_into(screen, "note", "Keep it eerie.")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: any(n.startswith("Not saved") for n in notes(app)))
        assert [n for n in notes(app) if n.startswith("Not saved")] == [
            "Not saved: A reply is being written: wait for it, or stop it first."
        ]
        assert app.screen is screen and screen.query_one("#note", TextArea).text == (
            "Keep it eerie."
        )
        await pilot.press("escape")  # closes the screen; the next Escape stops the reply
        await pilot.pause()
        await pilot.press("escape")
        await settle(pilot)
        assert play.session.memory.note != "Keep it eerie."
