"""One-line messages from validation errors, for players."""

from __future__ import annotations

from pydantic import ValidationError

from game.textsafety import for_terminal


def first_error(error: ValidationError, top: str) -> str:
    """The first problem as ``field: message``, saying how many more there are; ``top`` names
    a problem of the whole document."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or top
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    # Field names and messages quote what the file holds: one line, escapes shown visibly.
    return for_terminal(f"{where}: {first['msg']}{more}", one_line=True)
