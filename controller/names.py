"""Names that people read (pipelines, stages, repositories, agents): refuse characters that lie.

A name is shown in the web UI, in API answers, in logs and in terminals, and people decide what to
trust by reading it. Some characters make a name display as something it is not, or not display at
all: bidirectional controls (a right-to-left override turns `build‮txt.exe` around), zero-width
characters (two names that look the same but differ) and control characters (a newline or an
escape sequence rewrites the line a terminal shows). One function decides, so every place that
accepts a name refuses the same characters with the same words. It is pure (stdlib only): the
pipeline engine uses it for file diagnostics, the services raise `Invalid` with it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

from controller.errors import Invalid

__all__ = ["HINT", "NameProblem", "check_name", "name_problem", "shown"]

#: Bidirectional formatting controls: embeddings, overrides, isolates and the invisible marks.
BIDI_CONTROLS: Final = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
#: Characters that take no space: ZERO WIDTH SPACE, (NON-)JOINER, WORD JOINER, BOM.
ZERO_WIDTH: Final = frozenset([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF])
#: LINE SEPARATOR and PARAGRAPH SEPARATOR break a displayed line like a newline does.
LINE_BREAKS: Final = frozenset([0x2028, 0x2029])

#: What to do about a refused character, and why it is refused.
HINT: Final = (
    "remove it: names may not contain bidirectional controls, zero-width or control characters, "
    "which make a name display as something it is not"
)


@dataclass(frozen=True)
class NameProblem:
    """The first refused character of a name: which one, where (0-based index), and why."""

    name: str
    char: str
    index: int
    kind: str

    @property
    def code_point(self) -> str:
        """`U+202E RIGHT-TO-LEFT OVERRIDE`: how the message names the character."""
        code = f"U+{ord(self.char):04X}"
        label = unicodedata.name(self.char, "") or _CONTROL_NAMES.get(ord(self.char), "")
        return f"{code} {label}" if label else code

    def summary(self, what: str) -> str:
        """`what` ("stage name", "agent name") with the character's code point and its position."""
        where = f"at character {self.index + 1}"
        return f"{what} {shown(self.name)} contains {self.code_point} ({self.kind}) {where}"

    def message(self, what: str) -> str:
        """The summary and what to do, as one message (API errors; diagnostics put HINT apart)."""
        return f"{self.summary(what)}; {HINT}"


def name_problem(name: str) -> NameProblem | None:
    """The first character of `name` that would make it display deceptively, or None.

    Why per character and first only: the message points at one exact place to fix, and the caller
    (a diagnostic with a column, an API error) reports one problem per name.
    """
    for index, char in enumerate(name):
        kind = _kind(char)
        if kind is not None:
            return NameProblem(name, char, index, kind)
    return None


def check_name(name: str, what: str) -> None:
    """Raise `Invalid` naming the character (code point and position) when `name` has a refused one.

    `what` says which name it is in the message, e.g. "repository name" or "agent name".
    """
    problem = name_problem(name)
    if problem is not None:
        raise Invalid(problem.message(what))


def shown(name: str) -> str:
    """`name` quoted, with every refused character written as an escape (`'a\\u202eb'`).

    Why: an error message that repeats a name must not let that name reorder or hide the message.
    """
    text = "".join(f"\\u{ord(c):04x}" if _kind(c) is not None else c for c in name)
    return f"'{text}'"


def _kind(char: str) -> str | None:
    code = ord(char)
    if code in BIDI_CONTROLS:
        return "a bidirectional control"
    if code in ZERO_WIDTH:
        return "a zero-width character"
    if code in LINE_BREAKS:
        return "a line separator"
    if unicodedata.category(char) == "Cc":
        return "a control character"
    return None


#: unicodedata has no names for the C0/C1 controls; the common ones, for readable messages.
_CONTROL_NAMES: Final = {
    0x00: "NULL",
    0x07: "BELL",
    0x08: "BACKSPACE",
    0x09: "CHARACTER TABULATION",
    0x0A: "LINE FEED",
    0x0B: "LINE TABULATION",
    0x0C: "FORM FEED",
    0x0D: "CARRIAGE RETURN",
    0x1B: "ESCAPE",
    0x7F: "DELETE",
    0x85: "NEXT LINE",
}
