"""Play in a plain terminal: read a line, print the story. For scripts, pipes and quick games.

With ``json_mode`` each finished turn is one JSON object on its own line of stdout and nothing
else is written there; prompts and messages go to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TextIO

from game.backends.base import BackendError
from game.choices import resolve_action
from game.controller import GameBusyError, GameController, TurnOutcome
from game.progress import ReadingProgress
from game.runtime import format_status
from game.saves import SaveError, SaveNameError
from game.session import SessionError

HELP = (
    "Type a choice's number or any action. Commands: /undo (take back the last turn), "
    "/redo (put it back), /retry (write the last reply again), /save [NAME] (save, or save "
    "under a new name; the game also saves itself after every turn), /help, /quit."
)

# What a command or a turn may fail with, each one line for the player; the game is unchanged.
GAME_ERRORS = (BackendError, SessionError, SaveError, SaveNameError, GameBusyError)


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
    ):
        self.game = game
        self.progress = progress
        self.read_line = read_line
        self.out = out
        self.err = err
        self.json_mode = json_mode
        self.stream = stream and not json_mode

    @property
    def session(self):
        return self.game.session

    def _error(self, message: object) -> None:
        print(f"error: {message}", file=self.err, flush=True)

    def _notices(self) -> None:
        for notice in self.game.take_notices():
            print(f"note: {notice}", file=self.err, flush=True)

    def _save_as(self, name: str) -> None:
        try:
            path = self.game.save_as(name)
        except GAME_ERRORS as exc:
            self._error(exc)
            return
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
        on_text = None
        if self.stream:

            def on_text(text: str) -> None:
                self.out.write(text)
                self.out.flush()

        reading = ReadingProgress()
        shown = False

        def on_progress(done: int, total: int) -> bool:
            nonlocal shown
            reading.update(done, total)
            if done < total:
                self.err.write(f"\r\x1b[K{reading.line()}")
                shown = True
            elif shown:  # read: clear the line before the reply streams onto the terminal
                self.err.write("\r\x1b[K")
                shown = False
            self.err.flush()
            return True

        try:
            outcome = play(on_text=on_text, on_progress=on_progress if self.progress else None)
        except GAME_ERRORS as exc:
            if on_text is not None:
                print(file=self.out)
            self._error(exc)
            return
        finally:
            if shown:
                self.err.write("\r\x1b[K")
                self.err.flush()
        self._show(outcome, streamed=self.stream)

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
                if command == "/undo":
                    self._say(f"(took back: {self.game.undo().player.text})")
                else:
                    self._say(f"(put back: {self.game.redo().player.text})")
            except GAME_ERRORS as exc:
                self._error(exc)
                return True
            self._notices()
            session = self.game.session
            if session.exchanges and not self.json_mode:
                last = session.exchanges[-1]
                print(f"{last.narrative}\n", file=self.out)
                self._show_choices(last.choices)
        elif command == "/retry":
            self._turn(self.game.retry)
        else:
            self._error(f"unknown command {command} (try /help)")
        return True

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
            if not self.json_mode:
                self.out.write("> ")
                self.out.flush()
            line = self.read_line()
            if line is None:
                if not self.json_mode:
                    print(file=self.out)
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self._command(line):
                    return 0
                continue
            action = resolve_action(line, game.session.choices)
            self._turn(lambda **kw: game.play(action, **kw))  # noqa: B023 - called at once
