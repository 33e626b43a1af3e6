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
from game.kvstore import persist
from game.progress import ReadingProgress
from game.saves import SaveError, SaveSlot
from game.session import Session, SessionError, TurnResult

HELP = (
    "Type a choice's number or any action. Commands: /undo (take back the last turn), "
    "/redo (put it back), /retry (write the last reply again), /save [NAME] (save, or save "
    "under a new name; the game also saves itself after every turn), /help, /quit."
)


class HeadlessGame:
    """The terminal loop around a :class:`Session`.

    Args:
        session: The game to play.
        read_line: Returns the player's next line, or None at end of input.
        out: Where the story (or the JSON turns) go.
        err: Where prompts, notices and errors go.
        json_mode: One JSON object per turn on ``out``.
        stream: Print the reply as it is generated (for a person at a terminal).
        slot: Where the game saves itself after every change; None to not save.
        progress: Show how far the model has read a long prompt, on ``err`` (for a person at a
            terminal: the line is redrawn in place).
    """

    def __init__(
        self,
        session: Session,
        *,
        read_line: Callable[[], str | None],
        out: TextIO,
        err: TextIO,
        json_mode: bool = False,
        stream: bool = False,
        slot: SaveSlot | None = None,
        progress: bool = False,
    ):
        self.progress = progress
        self.session = session
        self.read_line = read_line
        self.out = out
        self.err = err
        self.json_mode = json_mode
        self.stream = stream and not json_mode
        self.slot = slot

    def _autosave(self) -> None:
        if self.slot is None:
            return
        try:
            self.slot.save(self.session)
        except SaveError as exc:
            print(f"warning: the game was not saved: {exc}", file=self.err, flush=True)

    def _save_as(self, name: str) -> None:
        if self.slot is None:
            print("error: saving is off in this game", file=self.err, flush=True)
            return
        try:
            path = self.slot.save_as(self.session, name) if name else self.slot.save(self.session)
        except SaveError as exc:
            print(f"error: {exc}", file=self.err, flush=True)
            return
        print(f"(saved to {path})", file=self.err, flush=True)
        persist(self.session.backend)

    def _show_story_so_far(self) -> None:
        """Where a resumed story stands: the last reply and its choices."""
        last = self.session.exchanges[-1]
        if self.json_mode:
            state = {
                "resumed": True,
                "turn": self.session.turn,
                "narrative": last.narrative,
                "choices": last.choices,
            }
            print(json.dumps(state, ensure_ascii=False), file=self.out, flush=True)
            return
        print(
            f"(resuming at turn {self.session.turn}; you did: {last.player.text})\n", file=self.out
        )
        print(f"{last.narrative}\n", file=self.out)
        self._show_choices(last.choices)

    def _say(self, text: str) -> None:
        print(text, file=self.err if self.json_mode else self.out, flush=True)

    def _show(self, result: TurnResult, *, streamed: bool) -> None:
        for notice in result.notices:
            print(f"note: {notice}", file=self.err, flush=True)
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

    def _turn(self, play: Callable[..., TurnResult], *args: str) -> None:
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
            result = play(
                *args, on_text=on_text, on_progress=on_progress if self.progress else None
            )
        except BackendError as exc:
            print(f"error: {exc}", file=self.err, flush=True)
            return
        finally:
            if shown:
                self.err.write("\r\x1b[K")
                self.err.flush()
        self._autosave()
        self._show(result, streamed=self.stream)

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
                    changed = self.session.undo()
                    self._say(f"(took back: {changed.player.text})")
                else:
                    changed = self.session.redo()
                    self._say(f"(put back: {changed.player.text})")
            except SessionError as exc:
                print(f"error: {exc}", file=self.err, flush=True)
                return True
            self._autosave()
            if self.session.exchanges and not self.json_mode:
                last = self.session.exchanges[-1]
                print(f"{last.narrative}\n", file=self.out)
                self._show_choices(last.choices)
        elif command == "/retry":
            if not self.session.exchanges:
                print("error: there is no reply to retry", file=self.err, flush=True)
            else:
                self._turn(self.session.retry)
        else:
            print(f"error: unknown command {command} (try /help)", file=self.err, flush=True)
        return True

    def run(self) -> int:
        """Play until the input ends or the player quits; return the exit status. The
        model's KV cache is stored on the way out (when the backend keeps a store)."""
        try:
            return self._run()
        finally:
            persist(self.session.backend)

    def _run(self) -> int:
        scenario = self.session.scenario
        if not self.json_mode:
            print(f"{scenario.title}\n{scenario.description}\n", file=self.out)
        if self.session.exchanges:
            self._show_story_so_far()
        else:
            self._turn(self.session.play, scenario.opening)
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
            self._turn(self.session.play, resolve_action(line, self.session.choices))
