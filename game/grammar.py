"""GBNF grammars that make a model end its reply with exactly N options. Pure functions.

The reply grammar lets the narrative flow freely (any characters, several lines and paragraphs)
as long as no line of it starts like a list item (``-``, ``*``, ``•``, ``1.``, ``2)``), then
requires a blank line and exactly N ``- `` lines of bounded length, then the end of the reply.
The options grammar is the block alone, for continuing a reply whose narrative is written.
"""

from __future__ import annotations

OPTION_MAX_CHARS = 100
OPTION_MIN_CHARS = 3
# The options block continues after this; it is written for the model, not generated.
OPTIONS_LEAD = "\n\n"

_COMMON = f"""
option ::= "- " [^\\n \\t] [^\\n]{{{OPTION_MIN_CHARS - 1},{OPTION_MAX_CHARS - 1}}}
"""


def _options_rule(count: int) -> str:
    if count < 1:
        raise ValueError("count must be at least 1")
    return "options ::= option" + ' "\\n" option' * (count - 1)


def reply_grammar(count: int) -> str:
    """A whole reply: narrative, a blank line, exactly ``count`` options, the end."""
    return (
        f'root ::= " "? narrative "{OPTIONS_LEAD.encode("unicode_escape").decode()}" options\n'
        # A narrative line may start with anything but white space or a list marker (a bullet,
        # or a number followed by "." or ")"), so the options are the reply's only list; lines
        # are separated by one newline, paragraphs by two.
        'narrative ::= line ("\\n" "\\n"? line)*\n'
        "line ::= [^\\n \\t*•0-9-] [^\\n]* | [0-9]+ ([^\\n.)0-9] [^\\n]*)?\n"
        f"{_options_rule(count)}\n"
        f"{_COMMON.strip()}\n"
    )


def options_grammar(count: int) -> str:
    """Only the option block: exactly ``count`` ``- `` lines, then the end."""
    return f"root ::= options\n{_options_rule(count)}\n{_COMMON.strip()}\n"
