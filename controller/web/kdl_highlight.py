"""A small KDL 1.0 syntax highlighter for the pipeline page.

It splits the source into (kind, text) tokens, line by line, and never rejects input: an
unterminated string or comment simply runs to the end. Templates wrap each token in a span whose
class is its kind, with autoescaping, so the source is never trusted as HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<comment>//[^\n]*|/\*(?:.|\n)*?(?:\*/|\Z))
  | (?P<slashdash>/-)
  | (?P<string>r(?P<hashes>\#*)"(?:.|\n)*?(?:"(?P=hashes)|\Z)|"(?:\\.|[^"\\])*(?:"|\Z))
  | (?P<number>[+-]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)(?![\w-]))
  | (?P<keyword>\b(?:true|false|null)\b)
  | (?P<punct>[{};=])
  | (?P<ident>[^\s{}();=/\\"\[\]]+)
  | (?P<space>[ \t\r]+)
  | (?P<newline>\n)
  | (?P<other>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """A piece of one line: `kind` is comment, string, number, keyword, node, prop, punct or text."""

    kind: str
    text: str


def highlight(source: str) -> list[list[Token]]:
    """The source as lines of tokens; the first identifier of a node is `node`, `key=` is `prop`."""
    lines: list[list[Token]] = [[]]
    at_node_start = True
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        if kind == "hashes":  # the raw string's inner group: report the whole string
            kind = "string"
        text = match.group()
        if kind == "newline":
            lines.append([])
            at_node_start = True
            continue
        if kind == "ident":
            following = source[match.end() : match.end() + 1]
            if at_node_start:
                kind = "node"
                at_node_start = False
            elif following == "=":
                kind = "prop"
            else:
                kind = "text"
        elif kind == "punct":
            if text in "{;}":
                at_node_start = True
        elif kind in ("string", "number", "keyword"):
            at_node_start = False
        elif kind in ("space", "other"):
            kind = "text"
        for index, part in enumerate(text.split("\n")):
            if index:
                lines.append([])
            if part:
                lines[-1].append(Token(kind, part))
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # the newline that ends the file starts no line of its own
    return lines
