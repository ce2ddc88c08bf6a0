"""BuildIt's own lines in a stage log: where each command starts, BuildIt's notes, the closing line.

Why in the log itself: a stage's log is one byte stream, stored as it arrives, addressed by byte
offset and streamed live; a marker inside it travels that whole path (storage, `/ws`, the line
pages, downloads) with no second channel to keep in step. The agent writes each line of its own
with a marker in front, an APC escape sequence (ESC _ … ESC \\) that terminals do not display, so
the raw log read on a terminal (`curl …/log`, `buildit logs`) shows just the text after it:

    ESC _ buildit;cmd;2;3 ESC \\ $ make test            command 2 of 3 starts (its first line)
    ESC _ buildit;more;2;3 ESC \\ > echo second line    a further line of that command's text
    ESC _ buildit;note ESC \\ restored 3 artifact file(s)   a line of BuildIt's own
    ESC _ buildit;end;failed;2;3 ESC \\ buildit: command 2 of 3 failed: "make test" exited with 1

`end` is the log's closing line: the stage's status, then the command it ended in and how many
the stage has (0 and the count when it ended in none, e.g. it succeeded or never started one).

Stage output cannot forge one: the agent passes every line of stage output through `neutralize`,
which turns the ESC of a line starting with the marker prefix into "␛" (U+241B), so only the
agent's own lines start with it. A marker never spans lines; its fields are words and numbers.
Only the start of a line counts (the UI and the controller look nowhere else).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CMD",
    "END",
    "MORE",
    "NOTE",
    "PREFIX",
    "PREFIX_BYTES",
    "Mark",
    "PlainStream",
    "line",
    "neutralize",
    "parse",
    "plain",
]

#: What every marker starts with; no line of stage output starts with it (see `neutralize`).
PREFIX: Final = "\x1b_buildit;"
PREFIX_BYTES: Final = PREFIX.encode()
#: Ends the marker (the APC's string terminator); the line's visible text follows.
TERMINATOR: Final = "\x1b\\"

CMD: Final = "cmd"
MORE: Final = "more"
NOTE: Final = "note"
END: Final = "end"

_FIELD: Final = re.compile(r"[a-z_0-9]+")
_MARK: Final = re.compile(r"\x1b_buildit;([a-z_0-9;]*)\x1b\\")
_ESCAPED: Final = "\u241b"  # SYMBOL FOR ESCAPE: shows where stage output held the marker prefix


@dataclass(frozen=True)
class Mark:
    """One marked line: its kind (`cmd`, `more`, `note`, `end`), fields, and visible text."""

    kind: str
    fields: tuple[str, ...]
    text: str

    def number(self, position: int) -> int:
        """Field `position` as a number (0 when absent or not one): a command index or count."""
        try:
            return int(self.fields[position])
        except (IndexError, ValueError):
            return 0


def line(kind: str, *fields: object, text: str = "") -> str:
    """A marked line of BuildIt's (no newline), e.g. `line(CMD, 2, 3, text="$ make test")`."""
    parts = [kind, *(str(field) for field in fields)]
    for part in parts:
        if not _FIELD.fullmatch(part):
            raise ValueError(f"log marker field {part!r} is not a lowercase word or number")
    return f"{PREFIX}{';'.join(parts)}{TERMINATOR}{text}"


def parse(text: str) -> Mark | None:
    """The marker at the start of one log line, or None for an ordinary line."""
    if not text.startswith(PREFIX):
        return None
    match = _MARK.match(text)
    if match is None:
        return None
    kind, *fields = match.group(1).split(";")
    return Mark(kind, tuple(fields), text[match.end() :])


def neutralize(text: str) -> str:
    """A line of stage output that cannot pass for one of BuildIt's (only when it starts like one)."""
    if text.startswith(PREFIX):
        return _ESCAPED + text[1:]
    return text


def plain(text: str) -> str:
    """`text` (one or more lines) with the markers removed: what a terminal shows."""
    if PREFIX not in text:
        return text
    return "\n".join(_visible(part) for part in text.split("\n"))


def _visible(part: str) -> str:
    match = _MARK.match(part)
    return part[match.end() :] if match is not None else part


_MARK_BYTES: Final = re.compile(rb"\x1b_buildit;[a-z_0-9;]*\x1b\\")


class PlainStream:
    """Removes the markers from a log read in pieces cut anywhere (what the CLI prints).

    Why a stream: a piece may end inside a marker; the start of a line that may still become one
    is held back until the rest arrives (at most the marker's length), the rest passes at once.
    """

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True

    def feed(self, data: bytes) -> bytes:
        """The next piece of the log; returns what to print of it (and of what was held)."""
        data = self._held + data
        self._held = b""
        out: list[bytes] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            line = data[start:] if end < 0 else data[start : end + 1]
            if self._line_start and line.startswith(b"\x1b"):
                match = _MARK_BYTES.match(line)
                if match is not None:
                    line = line[match.end() :]
                elif end < 0 and self._could_become_mark(line):
                    self._held = line
                    break
            out.append(line)
            self._line_start = end >= 0
            if end < 0:
                break
            start = end + 1
        return b"".join(out)

    def flush(self) -> bytes:
        """What is still held back (the log ended inside what looked like a marker)."""
        held, self._held = self._held, b""
        return held

    @staticmethod
    def _could_become_mark(line: bytes) -> bool:
        if len(line) < len(PREFIX_BYTES):
            return PREFIX_BYTES.startswith(line)
        return line.startswith(PREFIX_BYTES) and len(line) < 256 and b"\x1b\\" not in line[2:]
