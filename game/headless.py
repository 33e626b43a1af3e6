"""Play in a plain terminal: read a line, print the story. For scripts, pipes and quick games.

With ``json_mode`` each finished turn is one JSON object on its own line of stdout and nothing
else is written there; prompts and messages go to stderr. Other objects on stdout carry an
``"event"`` key: ``"summary"`` (a round of the story-so-far summary) and ``"context"``
(``/context``).

Work while the player reads runs in a thread at a terminal, or before each line is read for a
script: see :mod:`game.headless_background`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TextIO

from game.backends.base import BackendError
from game.choices import resolve_action
from game.controller import GameBusyError, GameController, MemoryTextError, TurnOutcome
from game.headless_background import Background, BackgroundRunner, Round
from game.headless_echo import ReplyEcho
from game.headless_memory import (
    context_json,
    context_lines,
    memory_lines,
    note_lines,
    parse_edit,
    segment_tokens,
    summary_event,
    summary_lines,
    turns_label,
)
from game.progress import ReadingProgress
from game.runtime import format_status
from game.saves import SaveError, SaveNameError
from game.session import SessionError
from game.textsafety import SafeWriter

log = logging.getLogger(__name__)

HELP = """\
Type a choice's number or any action. Commands:
  /undo                               take back the last turn
  /redo                               put it back
  /retry                              write the last reply again
  /save [NAME]                        save now, or under a new name from now on (the game
                                      also saves itself after every turn)
What the story remembers:
  /memory [TEXT | +LINE | clear]      facts the model reads every turn, after the system prompt
  /note [TEXT | clear]                the author's note, read just before each action
  /summary [TEXT | on | off | clear]  the story so far: the model writes it while you read,
                                      as turns leave the window; on/off, or your own text
  /context [ACTION]                   what the model reads next turn, part by part, in tokens
  /help                               this list
  /quit                               leave (so does the end of input)"""

# What a command or a turn may fail with, each one line for the player; the game is unchanged.
GAME_ERRORS = (
    BackendError,
    SessionError,
    SaveError,
    SaveNameError,
    GameBusyError,
    MemoryTextError,
)


class HeadlessGame:
    """The terminal loop around a :class:`GameController`.

    Args:
        game: The game to play.
        read_line: Returns the player's next line, or None at end of input.
        out: Where the story (or the JSON turns) go.
        err: Where prompts, notices and errors go.
        json_mode: One JSON object per turn on ``out``.
        stream: Print the reply as it is generated (for a person at a terminal).
        progress: Show how far the model has read a long prompt, on ``err`` (for a person at a
            terminal: the line is redrawn in place).
        background: How the work done while the player reads runs (see the module's doc).
    """

    def __init__(
        self,
        game: GameController,
        *,
        read_line: Callable[[], str | None],
        out: TextIO,
        err: TextIO,
        json_mode: bool = False,
        stream: bool = False,
        progress: bool = False,
        background: Background = "wait",
    ):
        self.game = game
        self.progress = progress
        self.read_line = read_line
        self.out = out
        self.err = err
        self.json_mode = json_mode
        self.stream = stream and not json_mode
        self.background = background
        self._work = BackgroundRunner(game, background)

    @property
    def session(self):
        return self.game.session

    def _redraw(self, line: str) -> None:
        """Draw ``line`` (our own text) over the status line of ``err``. The carriage return
        and the erase go around a SafeWriter, which would show them as ``^M^[[K``."""
        raw = self.err.stream if isinstance(self.err, SafeWriter) else self.err
        raw.write("\r\x1b[K")
        self.err.write(line)

    def _error(self, message: object) -> None:
        print(f"error: {message}", file=self.err, flush=True)

    def _notices(self) -> None:
        for notice in self.game.take_notices():
            print(f"note: {notice}", file=self.err, flush=True)

    # -- work while the player reads ---------------------------------------------------------

    def _idle(self) -> None:
        """The player is about to be asked for a line: tell what finished background work
        did, and start what is waiting for an idle model (in wait mode: do it now and tell)."""
        if self._work.running:
            return  # still at it while the player reads
        self._settle()
        self._work.start()
        if self.background == "wait":
            self._settle()

    def _settle(self) -> None:
        """Tell what background work did, once it is done or stopped (after the controller
        took the game for a turn or a change, which stops it and waits)."""
        for finished in self._work.collect():
            self._tell_background(finished)
        self._notices()

    def _leave(self) -> None:
        """The player is done: tell what finished background work did. Work still running is
        not waited for; closing the game stops it."""
        if not self._work.running:
            self._settle()

    def _tell_background(self, finished: Round) -> None:
        outcome, through = finished.outcome, finished.through
        if not (through or outcome.summary is not None):
            return  # only the prompt was made ready
        if self.json_mode:
            event = summary_event(outcome, through)
            print(json.dumps(event, ensure_ascii=False), file=self.out, flush=True)
        elif outcome.summary is not None:
            self._say(f"(story so far: {turns_label(1, outcome.through)} summarized)")
        if outcome.problem:
            self._error(f"the story so far could not be written: {outcome.problem}")

    # -- commands ------------------------------------------------------------------------------

    def _save_as(self, name: str) -> None:
        try:
            path = self.game.save_as(name)
        except GAME_ERRORS as exc:
            self._settle()
            self._error(exc)
            return
        self._settle()
        print(f"(saved to {path})", file=self.err, flush=True)

    def _show_story_so_far(self) -> None:
        """Where a resumed story stands: the last reply and its choices."""
        session = self.game.session
        last = session.exchanges[-1]
        if self.json_mode:
            state = {
                "resumed": True,
                "turn": session.turn,
                "narrative": last.narrative,
                "choices": last.choices,
            }
            print(json.dumps(state, ensure_ascii=False), file=self.out, flush=True)
            return
        print(f"(resuming at turn {session.turn}; you did: {last.player.text})\n", file=self.out)
        print(f"{last.narrative}\n", file=self.out)
        self._show_choices(last.choices)

    def _show_intro(self) -> None:
        """The scenario's written intro: the first reply, shown without generating."""
        intro = self.game.session.exchanges[0]
        if self.json_mode:
            state = {
                "turn": 1,
                "intro": True,
                "narrative": intro.narrative,
                "choices": intro.choices,
            }
            print(json.dumps(state, ensure_ascii=False), file=self.out, flush=True)
            return
        print(f"{intro.narrative}\n", file=self.out)
        self._show_choices(intro.choices)

    def _say(self, text: str) -> None:
        print(text, file=self.err if self.json_mode else self.out, flush=True)

    def _show(self, outcome: TurnOutcome, *, streamed: bool) -> None:
        result = outcome.result
        if outcome.save_problem:
            print(f"warning: the game was not saved: {outcome.save_problem}", file=self.err)
        self._notices()
        if self.json_mode:
            print(json.dumps(result.as_json(), ensure_ascii=False), file=self.out, flush=True)
            return
        if streamed:
            print("\n", file=self.out)
        else:
            print(f"{result.narrative}\n", file=self.out)
        if result.cut_short:
            print("(the reply was cut short: /retry writes it again)", file=self.out)
        self._show_choices(result.choices)

    def _show_choices(self, choices: list[str]) -> None:
        if self.json_mode:
            return
        for number, choice in enumerate(choices, 1):
            print(f"  {number}. {choice}", file=self.out)
        print(file=self.out, flush=True)

    def _turn(self, play: Callable[..., TurnOutcome]) -> None:
        # The turn holds the game now: background work has stopped; say what it did first.
        settled = False

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                self._settle()

        echo: ReplyEcho | None = None
        if self.stream:

            def write(text: str) -> None:
                settle()
                self.out.write(text)
                self.out.flush()

            echo = ReplyEcho(write)

        reading = ReadingProgress()
        shown = False
        window_before = self.session.window_start

        def on_progress(done: int, total: int) -> bool:
            nonlocal shown
            settle()
            reading.update(done, total)
            if done < total:
                self._redraw(reading.line())
                shown = True
            elif shown:  # read: clear the line before the reply streams onto the terminal
                self._redraw("")
                shown = False
            self.err.flush()
            return True

        try:
            outcome = play(
                on_text=echo.feed if echo else None,
                on_rewind=echo.rewind if echo else None,
                on_progress=on_progress if self.progress else None,
            )
        except GAME_ERRORS as exc:
            if echo is not None:
                print(file=self.out)
            settle()
            self._error(exc)
            return
        finally:
            if shown:
                self._redraw("")
                self.err.flush()
        settle()
        if echo is not None:
            echo.finish(outcome.result.narrative)
        self._show(outcome, streamed=self.stream)
        self._tell_slide(window_before)

    def _tell_slide(self, window_before: int) -> None:
        """Say which turns a turn's slide took out of the window (text mode: the JSON turn
        has window_start and window_slid)."""
        start = self.session.window_start
        if self.json_mode or start <= window_before:
            return
        gone = turns_label(window_before + 1, start)
        if not self.session.memory.auto_summary:
            self._say(f"({gone} left the window; summaries are off: /summary on)")
        elif self.background == "thread" and self.session.summary_pending:
            self._say(f"({gone} left the window; the story so far is written while you read)")
        else:  # a script's summary is written at once, and said next
            self._say(f"({gone} left the window)")

    def _command(self, line: str) -> bool:
        """Run a /command; return False when the game should end."""
        command, _, argument = line.partition(" ")
        command = command.lower()
        if command in ("/quit", "/exit", "/q"):
            return False
        if command == "/help":
            print(HELP, file=self.err, flush=True)
        elif command == "/save":
            self._save_as(argument.strip())
        elif command in ("/undo", "/redo"):
            try:
                exchange = self.game.undo() if command == "/undo" else self.game.redo()
            except GAME_ERRORS as exc:
                self._settle()
                self._error(exc)
                return True
            self._settle()
            done = "took back" if command == "/undo" else "put back"
            self._say(f"({done}: {exchange.player.text})")
            session = self.game.session
            if session.exchanges and not self.json_mode:
                last = session.exchanges[-1]
                print(f"{last.narrative}\n", file=self.out)
                self._show_choices(last.choices)
        elif command == "/retry":
            self._turn(self.game.retry)
        elif command in ("/memory", "/note", "/summary"):
            self._memory_command(command, argument)
        elif command == "/context":
            self._context(argument.strip())
        else:
            self._error(f"unknown command {command} (try /help)")
        return True

    def _memory_command(self, command: str, argument: str) -> None:
        """``/memory``, ``/note`` and ``/summary``: show, set, clear, or turn summaries on/off."""
        edit = parse_edit(command, argument)
        session = self.session
        running = self.game.background_running
        if edit.action == "show":
            show = {
                "/memory": lambda: memory_lines(session),
                "/note": lambda: note_lines(session),
                "/summary": lambda: summary_lines(session, running=running),
            }[command]
            self._say("\n".join(show()))
            return
        what = {"/memory": "memory", "/note": "author's note", "/summary": "story so far"}[command]
        try:
            if edit.action in ("on", "off"):
                self.game.set_summaries(edit.action == "on")
                done = f"(automatic summaries {edit.action})"
            else:
                text = edit.text
                if edit.action == "append" and session.memory.memory:
                    text = f"{session.memory.memory}\n{text}"
                setter = {
                    "/memory": self.game.set_memory,
                    "/note": self.game.set_note,
                    "/summary": self.game.set_summary,
                }[command]
                setter(text)
                done = f"({what} cleared)"
                if text:
                    kind = {"/memory": "memory", "/note": "note", "/summary": "summary"}[command]
                    done = f"({what} set: {segment_tokens(session, kind)} tokens)"
        except GAME_ERRORS as exc:
            self._settle()
            self._error(exc)
            return
        self._settle()
        self._say(done)

    def _context(self, argument: str) -> None:
        """``/context [ACTION]``: the next turn's prompt, part by part."""
        session = self.session
        action = resolve_action(argument, session.choices) if argument else None
        running = self.game.background_running
        try:
            if self.json_mode:
                view = context_json(session, action, running=running)
                print(json.dumps(view, ensure_ascii=False), file=self.out, flush=True)
            else:
                self._say("\n".join(context_lines(session, action, running=running)))
        except GAME_ERRORS as exc:
            self._error(exc)

    def run(self) -> int:
        """Play until the input ends or the player quits; return the exit status."""
        game = self.game
        scenario = game.session.scenario
        # What a status line would say: the model and the prompt format in use, and why.
        fmt = format_status(game.session.format, game.session.backend)
        print(f"({game.session.backend.name}, prompt format {fmt})", file=self.err, flush=True)
        if not self.json_mode:
            print(f"{scenario.title}\n{scenario.description}\n", file=self.out)
        self._notices()
        if game.needs_opening:
            self._turn(game.play_opening)
        elif game.session.turn == game.session.intro_turns:
            # A new game of a scenario with a written intro: it is the first reply.
            self._show_intro()
        else:
            self._show_story_so_far()
        while True:
            self._idle()
            if not self.json_mode:
                self.out.write("> ")
                self.out.flush()
            line = self.read_line()
            if not self._work.running:
                self._settle()  # done while the player typed: said before their line's output
            if line is None:
                if not self.json_mode:
                    print(file=self.out)
                self._leave()
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self._command(line):
                    self._leave()
                    return 0
                continue
            action = resolve_action(line, game.session.choices)
            self._turn(lambda **kw: game.play(action, **kw))  # noqa: B023 - called at once
