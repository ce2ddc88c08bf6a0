"""The size limits of a pipeline file, in one place, and the cheap checks made before parsing.

A pipeline file comes from any commit of any watched repository, so its size must not decide how
long the controller works or whether it crashes. Every limit here is far above what a real pipeline
needs (a 5,000-stage DAG is a benchmark size and stays valid) and is reported like any other
problem: a diagnostic at the first offending node saying the limit and how to fix the file.

`source_problem` runs before the text reaches kdl-py: kdl-py's parser recurses once per nested block
(and per nested `/* */` comment), so deeply nested junk must be turned away by a linear scan first.
"""

from __future__ import annotations

import re

from controller.definition.model import Diagnostic

# The whole file, in UTF-8 bytes. Files are read whole and parsed in memory; 1 MiB is ~20,000 stages
# of the usual three lines, twice the stage limit.
MAX_FILE_BYTES = 1024 * 1024
# Blocks `{ }` (and block comments `/* */`) nested deeper than this. A pipeline needs one level (a
# stage's block); the slack lets a misplaced block get its ordinary "takes no block" diagnostic, and
# stays far below the ~500 levels at which kdl-py's recursive parser hits Python's recursion limit
# (fewer when the parse starts deep in a call stack, as in a web handler).
MAX_NESTING = 16
# Stages in one pipeline: every run stores and schedules each one. 10,000 keeps a 5,000-stage
# benchmark DAG valid with room to spare.
MAX_STAGES = 10_000
# `needs` references in the whole pipeline (each name written counts once): five per stage on
# average at the stage limit; a stage needing all others is what fan-in through one stage is for.
MAX_NEEDS = 50_000
# `run` commands in one stage: each one is a step of the stage's script and a line of its log.
MAX_COMMANDS_PER_STAGE = 1_000
# `env` entries at the top level, and in one stage. The top-level ones are copied into every stage
# of every run, so their number multiplies with the stage count.
MAX_ENV_ENTRIES = 256
# An env value after `${env.NAME}` substitution. Values that use other values can double at each
# entry (A2 = A1A1, A3 = A2A2, ...): without a bound 40 short lines would ask for a terabyte.
MAX_ENV_VALUE_CHARS = 64 * 1024
# Nodes in the file, counted before parsing (a line or `;` that starts something, outside strings
# and comments). kdl-py parses ~40,000 small nodes a second, so 1 MiB of one-letter nodes would
# take 15 s; this keeps the worst file near the cost of 1 MiB of ordinary stages (a few seconds).
# A 10,000-stage pipeline with eight lines per stage stays under it.
MAX_NODES = 100_000
# `trigger` nodes in one pipeline: each cron trigger is a schedule the controller keeps and fires.
MAX_TRIGGERS = 100
# Names of the pipeline and of env variables (stage names have their own 63-character rule).
MAX_NAME_CHARS = 255

# Where nesting can change, outside strings and comments: braces, strings, comments, raw strings.
_INTERESTING = re.compile(r'[{}"/]|(?<![\w\-.])r#*"')
# The rest of an escaped string after its opening quote, up to and including the closing quote.
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_COMMENT_MARK = re.compile(r"/\*|\*/")
# Where a node starts: after a line break or `;`, the first character that is not blank, a `}`, a
# `;` or a comment. `{` starts a node too when something follows it on its line.
_NODE_START = re.compile(r"[\n;][ \t]*[^\s;}/]")
_INLINE_START = re.compile(r"[ \t]*[^\s;}/]")


def _position(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, col) of `offset`, without building a line table."""
    line_start = source.rfind("\n", 0, offset) + 1
    return source.count("\n", 0, offset) + 1, offset - line_start + 1


class _Scan:
    """One linear pass over the text before parsing: nesting depth and an estimate of the nodes.

    A regex jumps from one interesting character to the next. Strings (escaped and raw) and line
    comments are skipped, so braces and line breaks inside them do not count; block comments nest
    as in KDL. An unterminated string or comment ends the scan: kdl-py reports it as a syntax error.
    `problem` is the first limit broken: ("blocks" | "comments" | "nodes", offset), else None.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = 0
        self.problem: tuple[str, int] | None = None
        self._run()

    def _count_nodes(self, start: int, end: int) -> None:
        """Add the node starts in source[start:end] (text outside strings and comments)."""
        found = len(_NODE_START.findall(self.source, start, end))
        if self.nodes + found > MAX_NODES:
            over = _NODE_START.finditer(self.source, start, end)
            for _ in range(MAX_NODES - self.nodes):
                next(over)
            self.problem = ("nodes", next(over).end() - 1)
        self.nodes += found

    def _run(self) -> None:
        source = self.source
        depth = 0
        pos = 0
        while (match := _INTERESTING.search(source, pos)) is not None:
            token, start = match.group(), match.start()
            self._count_nodes(pos, start)
            if self.problem:
                return
            pos = match.end()
            if token == "{":
                depth += 1
                if depth > MAX_NESTING:
                    self.problem = ("blocks", start)
                    return
                inline = _INLINE_START.match(source, pos)
                if inline is not None:  # `{ run "x"; }`: a node starts on the block's line
                    self.nodes += 1
                    if self.nodes > MAX_NODES:
                        self.problem = ("nodes", inline.end() - 1)
                        return
            elif token == "}":
                depth = max(depth - 1, 0)
            elif token == '"':
                rest = _STRING_REST.match(source, pos)
                if rest is None:
                    return
                pos = rest.end()
            elif token.startswith("r"):
                close = source.find('"' + "#" * (len(token) - 2), pos)
                if close < 0:
                    return
                pos = close + len(token) - 1
            elif source.startswith("//", start):
                newline = source.find("\n", start)
                if newline < 0:
                    return
                pos = newline  # the line break ends the node before the comment: count what follows
            elif source.startswith("/*", start):
                pos = self._skip_comment(start)
                if pos < 0:
                    return
        self._count_nodes(pos, len(source))

    def _skip_comment(self, start: int) -> int:
        """The offset after the block comment at `start` (nested ones included), or -1."""
        comments = 0
        pos = start
        while (mark := _COMMENT_MARK.search(self.source, pos)) is not None:
            pos = mark.end()
            if mark.group() == "/*":
                comments += 1
                if comments > MAX_NESTING:
                    self.problem = ("comments", mark.start())
                    return -1
            else:
                comments -= 1
                if not comments:
                    return pos
        return -1


def source_problem(source: str, filename: str) -> Diagnostic | None:
    """The file-level limit the text breaks (size, nesting, nodes), checked before parsing, else None."""
    # A character is at most 4 bytes in UTF-8: encode only when the length alone cannot decide.
    if len(source) > MAX_FILE_BYTES or (
        len(source) * 4 > MAX_FILE_BYTES and len(source.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES
    ):
        size = len(source.encode("utf-8", "surrogatepass"))
        return Diagnostic(
            filename,
            1,
            1,
            f"the pipeline file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes (1 MiB)",
            'move long scripts into files in the repository and run them (run "./ci/build.sh"), '
            "or split the pipeline into several files",
        )
    scan = _Scan(source)
    if scan.problem is None:
        return None
    kind, offset = scan.problem
    line, col = _position(source, offset)
    if kind == "nodes":
        message = f"more than {MAX_NODES:,} nodes in the file; this is where the next one starts"
        hint = (
            'give one run several commands (run "make" "make test") or move long scripts into '
            "files in the repository"
        )
    elif kind == "blocks":
        message = f"blocks are nested more than {MAX_NESTING} deep here; the limit is {MAX_NESTING}"
        hint = (
            "a pipeline needs one level, a stage's block: close the blocks left open above this "
            "one or remove the extra nesting"
        )
    else:
        message = f"block comments are nested more than {MAX_NESTING} deep here; the limit is {MAX_NESTING}"
        hint = "block comments nest in KDL: close each '/*' with its own '*/' before opening more"
    return Diagnostic(filename, line, col, message, hint)
