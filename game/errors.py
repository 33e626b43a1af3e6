"""One-line messages from validation errors, for players."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(error: ValidationError, top: str) -> str:
    """The first problem as ``field: message``, saying how many more there are; ``top`` names
    a problem of the whole document."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or top
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
