"""Load YAML from untrusted files with line numbers for every value.

Scenario authors get messages like ``haunted.yaml:12: sampling.temperature: ...``, so loading
keeps the composed node tree beside the data and maps a field path back to a line. Loading is
``yaml.safe_load`` semantics (no Python tags) with limits on size and on alias expansion, so a
"billion laughs" file fails fast instead of eating memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from game.boundary import MAX_DEPTH, MAX_INT_DIGITS, BoundaryError, decode_utf8, read_regular
from game.textsafety import for_terminal

MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 50_000
_INT_TAG = "tag:yaml.org,2002:int"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, printed as ``FILE:LINE: field: message``."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        # Keys, values and file names come from strangers: shown on one line, escapes visible,
        # so a crafted key can neither forge a second problem line nor drive the terminal.
        return for_terminal(f"{self.file}:{self.line}: {self.field}: {self.message}", one_line=True)


class YamlLoadError(Exception):
    """A file could not be read as YAML; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class YamlDocument:
    """Data loaded from a YAML file, with the node tree that knows where each value was."""

    path: str
    data: Any
    root: yaml.Node

    def line_of(self, loc: Sequence[str | int]) -> int:
        """The 1-based line of the value at ``loc`` (keys and list indexes), or of the nearest
        enclosing value that exists, so a missing field points at its parent mapping."""
        node = self.root
        line = node.start_mark.line + 1
        for key in loc:
            child = _child(node, key)
            if child is None:
                break
            key_node, node = child
            line = (key_node or node).start_mark.line + 1
        return line


def _child(node: yaml.Node, key: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return key_node, value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return None, node.value[key]
    return None


def _check_nodes(path: str, root: yaml.Node) -> list[Problem]:
    """Count nodes as they would be expanded (aliases included) and find duplicate keys."""
    problems: list[Problem] = []
    count = 0
    stack = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            line = node.start_mark.line + 1
            message = f"document expands to more than {MAX_NODES} values (YAML alias bomb?)"
            return [Problem(path, line, "file", message)]
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        line = key_node.start_mark.line + 1
                        problems.append(Problem(path, line, key_node.value, "duplicate key"))
                    seen.add(key_node.value)
                stack.extend((key_node, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
            line = node.start_mark.line + 1
            message = f"a number of {len(node.value)} characters (the limit is {MAX_INT_DIGITS})"
            return [Problem(path, line, "yaml", message)]
    return problems


def _check_depth(text: str, path: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH before composing it: PyYAML's parser
    is a state machine, but its composer recurses once per level."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 1
                message = f"nested more than {MAX_DEPTH} levels deep"
                raise YamlLoadError([Problem(path, line, "yaml", message)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_yaml(text: str, path: str) -> YamlDocument:
    """Parse one YAML document from text.

    Raises:
        YamlLoadError: for syntax errors, several documents, an empty document, duplicate keys,
            unsafe tags, or too many values.
    """
    try:
        _check_depth(text, path)
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        raise YamlLoadError([Problem(path, line, "yaml", problem)]) from None
    except yaml.YAMLError as exc:
        raise YamlLoadError([Problem(path, 1, "yaml", str(exc).splitlines()[0])]) from None
    if not nodes:
        raise YamlLoadError([Problem(path, 1, "file", "the file is empty")])
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise YamlLoadError([Problem(path, line, "file", "only one YAML document is allowed")])
    root = nodes[0]
    problems = _check_nodes(path, root)
    if problems:
        raise YamlLoadError(problems)
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(root)
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise YamlLoadError([Problem(path, line, "yaml", exc.problem or str(exc))]) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # A value the resolver accepted but Python cannot build (a timestamp of month 13).
        message = f"a value that cannot be read: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        raise YamlLoadError([Problem(path, 1, "yaml", message)]) from None
    finally:
        loader.dispose()
    return YamlDocument(path, data, root)


def read_text(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """Read a regular file as UTF-8 text within a size limit (see :mod:`game.boundary`).

    Raises:
        YamlLoadError: when the file is missing, not a regular file (a FIFO, a device, a
            folder), larger than the limit, or not UTF-8.
    """
    name = str(path)
    try:
        raw = read_regular(path, max_bytes)
    except BoundaryError as exc:
        raise YamlLoadError([Problem(name, 1, "file", str(exc))]) from None
    try:
        return decode_utf8(raw)
    except BoundaryError as exc:
        raise YamlLoadError([Problem(name, exc.line, "file", str(exc))]) from None


def load_yaml_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> YamlDocument:
    """Read and parse one YAML file; see :func:`read_text` and :func:`parse_yaml`."""
    return parse_yaml(read_text(path, max_bytes=max_bytes), str(path))
