"""``python -m game``: see :mod:`game.cli`."""

from game.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
