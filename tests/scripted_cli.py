"""``python -m tests.scripted_cli ARGS``: the game's command line, ``python -m game ARGS``, with a
scripted model in place of llama.cpp. Everything else is the real thing: argument parsing,
settings, the controller, stdin, stdout, the background thread. For subprocess tests of the
headless game that need a game that slides and summarizes fast and the same way every run.

The model's context is ``--n-ctx``'s; a turn's reply names the room and the turn, a summary
request gets a summary naming the number of events it covered.
"""

from __future__ import annotations

import sys

SUMMARY = "Ann met the smith Bo, who owes her 7 coins, and took the brass key."


def reply_or_summary(prompt: str) -> str:
    """A turn's reply, or a summary when the prompt asks for one."""
    if "Write the new story so far." in prompt:
        return f"{SUMMARY} ({prompt.count(chr(10) + '> ')} events.)"
    turn = prompt.count("<|model|>")
    return f"Room {turn} is dim and the air is cold here.\n\n- North.\n- South.\n- Wait."


def main() -> int:
    import game.runtime
    from game.backends.scripted import ScriptedBackend
    from game.cli import main as game_main
    from game.config import Settings

    def open_scripted(settings: Settings) -> ScriptedBackend:
        return ScriptedBackend(replies=reply_or_summary, n_ctx=settings.n_ctx)

    game.runtime.open_backend = open_scripted  # type: ignore[assignment]
    return game_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
