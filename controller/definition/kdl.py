"""KDL 1.0 parsing with source positions. The only module that imports kdl-py.

kdl-py's nodes carry no positions, but its node converters receive a fragment that knows the
offset where the node starts; we record it so every later diagnostic can say FILE:LINE:COL.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

import kdl

from controller.definition.limits import source_problem
from controller.definition.model import Diagnostic

Value = str | int | float | bool | None


@dataclass
class RawNode:
    """A parsed KDL node with its position; values are plain Python values."""

    name: str
    args: list[Value]
    props: dict[str, Value]
    children: list[RawNode]
    offset: int
    line: int
    col: int
    has_block: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the next node starts (or the end of the text): the node's own text lies before it.
    end: int = -1


class SourceMap:
    """Maps character offsets to 1-based line/column, and finds text near a node."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._starts = [0] + [m.end() for m in re.finditer("\n", source)]

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, col) of a character offset."""
        index = bisect.bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1

    def find_on_line(self, node: RawNode, needle: str) -> tuple[int, int]:
        """Position of `needle` on the node's first line after the node start, else the node's.

        The search stops where the next node starts, so a file written on one long line costs no
        more per diagnostic than a file of short lines.
        """
        end = _line_end(self.source, node.offset, node.end)
        found = self.source.find(needle, node.offset, end)
        if found < 0:
            return node.line, node.col
        return self.position(found)


def _plain(value: Any) -> Value:
    """kdl-py returns native values for untagged literals; unwrap anything else to its value.

    kdl-py reads every decimal literal as a float; whole numbers become ints so `retries 2` is an int.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    inner = getattr(value, "value", value)
    if inner is None or isinstance(inner, str | int | float | bool):
        return inner
    return str(inner)


def parse(source: str, filename: str) -> tuple[list[RawNode], SourceMap] | Diagnostic:
    """Parse KDL text into positioned nodes, or return the syntax error as a diagnostic.

    Text over the size or nesting limits (limits.py) is refused before kdl-py sees it.
    """
    problem = source_problem(source, filename)
    if problem is not None:
        return problem
    smap = SourceMap(source)
    offsets: dict[int, int] = {}

    def remember(node: Any, fragment: Any) -> Any:
        offsets[id(node)] = fragment._i
        node._buildit_offset = fragment._i
        return node

    config = kdl.ParseConfig(nodeConverters={...: remember})
    try:
        doc = kdl.parse(source, config)
    except kdl.ParseError as exc:
        return _syntax_diagnostic(exc, source, filename)

    starts = sorted(offsets.values())

    def convert(node: Any) -> RawNode:
        offset = getattr(node, "_buildit_offset", 0)
        line, col = smap.position(offset)
        following = bisect.bisect_right(starts, offset)
        end = starts[following] if following < len(starts) else len(source)
        children = [convert(child) for child in node.nodes]
        return RawNode(
            name=str(node.name),
            args=[_plain(arg) for arg in node.args],
            props={str(k): _plain(v) for k, v in node.props.items()},
            children=children,
            offset=offset,
            line=line,
            col=col,
            has_block=bool(children) or _has_block(source, offset, end),
            end=end,
        )

    return [convert(node) for node in doc.nodes], smap


def _line_end(source: str, offset: int, limit: int) -> int:
    """The end of the line that `offset` is on, looking no further than `limit` (-1: no limit)."""
    limit = len(source) if limit < 0 else limit
    end = source.find("\n", offset, limit)
    return limit if end < 0 else end


def _has_block(source: str, offset: int, limit: int = -1) -> bool:
    """Whether the node at `offset` has a `{ }` block on its line (even an empty one).

    Looks no further than `limit`, where the next node starts: linear over a whole file.
    """
    return source.find("{", offset, _line_end(source, offset, limit)) >= 0


_JUNK = "Junk after node, before terminator"


def _syntax_diagnostic(exc: Any, source: str, filename: str) -> Diagnostic:
    """Turn a kdl-py ParseError into a diagnostic, with a fix for the commonest KDL 1.0 pitfall."""
    message = str(exc.msg).split("parse error:", 1)[-1].strip()
    message = " ".join(message.split())
    line, col = int(exc.line), int(exc.col)
    lines = source.splitlines()
    text = lines[line - 1] if 1 <= line <= len(lines) else ""
    hint = ""
    if _JUNK in message and col - 1 < len(text) and text[col - 1] == "}" and "{" in text[: col - 1]:
        fixed = text[: col - 1].rstrip() + "; " + text[col - 1 :]
        hint = (
            "in KDL 1.0 a node inside a one-line block needs a ';' before the closing '}'; "
            f"write: {fixed.strip()}"
        )
    elif _JUNK in message:
        hint = (
            "a node ends at a newline or ';'; strings need double quotes "
            '(run "echo hi", not run echo hi), and properties are written key="value"'
        )
    elif "EOF while searching for end of child list" in message:
        hint = "the block opened here with '{' is never closed: add the matching '}'"
    elif "Expected a node" in message and text[col - 1 : col] == "}":
        hint = "this '}' closes no block: remove it or add the matching '{'"
    elif "prop=" in message:
        hint = 'property values are quoted strings or numbers: key="value"'
    elif "Expected a node" in message:
        hint = 'every line is a node: a name followed by quoted values, e.g. run "make test"'
    if not message.endswith("."):
        message += "."
    return Diagnostic(filename, line, col, f"KDL syntax error: {message[0].lower()}{message[1:]}", hint)
