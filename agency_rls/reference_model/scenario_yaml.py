"""YAML that remembers where each value came from, so a scenario's errors can name file and line.

Why not ``yaml.safe_load``: it returns plain dicts and lists, and the line a mistake sits on is lost;
it also silently keeps the last of two equal keys. Here the document is *composed* (``yaml.compose``
keeps every node's start mark) and converted to ``LocatedMap`` / ``LocatedList``, which carry the line
of the container, of each key and of each item. Scalars keep YAML's usual types (int, bool, date,
null ...) through PyYAML's safe constructor; keys stay the text written (``on:`` is the string
``on``, not YAML 1.1's ``True``).

Every problem goes to an ``Issues`` collector instead of being raised at once, so that one run
reports all mistakes of a file (``file:line: message``); ``Issues.raise_if_any`` ends the parse.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor


class ScenarioError(ValueError):
    """A scenario file that cannot be used: malformed YAML, unknown keys or labels, broken rows.

    ``messages`` are ``file:line: what`` lines, in line order; ``str()`` joins them.
    """

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("\n".join(messages))


class LocatedMap(dict[str, Any]):
    """A YAML mapping with the line (1-based) of itself and of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        """The line of ``key``, or of the mapping when the key is absent."""
        return self.key_lines.get(key, self.line)


class LocatedList(list[Any]):
    """A YAML sequence with the line of itself and of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


@dataclass
class Issues:
    """Problems found in one file, reported together as ``file:line: message``."""

    source: str
    found: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, message: str) -> None:
        """Record a problem at ``line`` (0: the file as a whole)."""
        self.found.append((line, message))

    def unknown(self, line: int, what: str, name: str, where: str, known: Iterable[str]) -> None:
        """Record an unknown name, with a suggestion when a known one is close."""
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.add(line, f"unknown {what} {name!r} in {where}{hint}")

    def fail(self, line: int, message: str) -> NoReturn:
        """Record a problem that ends the parse, and raise with everything found so far."""
        self.add(line, message)
        self.raise_if_any()
        raise AssertionError("raise_if_any raises when a problem was recorded")

    def raise_if_any(self) -> None:
        """Raise ``ScenarioError`` with every problem so far, in line order."""
        if self.found:
            lines = sorted(dict.fromkeys(self.found), key=lambda item: item[0])  # stable: cause first
            raise ScenarioError(
                [
                    f"{self.source}:{line}: {message}" if line else f"{self.source}: {message}"
                    for line, message in lines
                ]
            )


def compose(text: str, issues: Issues) -> Any:
    """The document of ``text`` as located values; None for an empty document.

    Malformed YAML is recorded as an issue at the line the parser names, and ends the parse.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        reason = f"{context}, {problem}" if context else problem
        issues.fail(mark.line + 1 if mark is not None else 0, f"malformed YAML: {reason}")
    if node is None:
        return None
    return _convert(node, SafeConstructor(), issues)


def _convert(node: yaml.Node, constructor: SafeConstructor, issues: Issues) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        mapping = LocatedMap(line)
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                issues.add(key_line, "a key must be a plain name, not a list or mapping")
                continue
            key = str(key_node.value)
            if key in mapping:
                issues.add(key_line, f"duplicate key {key!r} (first on line {mapping.key_lines[key]})")
                continue
            mapping[key] = _convert(value_node, constructor, issues)
            mapping.key_lines[key] = key_line
        return mapping
    if isinstance(node, yaml.SequenceNode):
        sequence = LocatedList(line)
        for item in node.value:
            sequence.append(_convert(item, constructor, issues))
            sequence.item_lines.append(item.start_mark.line + 1)
        return sequence
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as error:
        issues.add(line, f"malformed value: {getattr(error, 'problem', None) or error}")
        return None
