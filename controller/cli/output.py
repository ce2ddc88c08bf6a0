"""How the client verbs print: one rich Console, and times and durations as people read them.

Only the CLI imports rich. On a terminal the console colours; piped or captured it prints plain
text, wide enough that a table's rows do not wrap.
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

#: Width of tables when the output is not a terminal (scripts, CI logs, tests).
PLAIN_WIDTH = 160


def console() -> Console:
    """Where tables and progress go: colours on a terminal, plain text otherwise."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(highlight=False)
    width = max(shutil.get_terminal_size((PLAIN_WIDTH, 24)).columns, PLAIN_WIDTH)
    return Console(highlight=False, width=width)


def escape(text: object) -> str:
    """`text` shown as is, never read as rich markup (names and messages come from users)."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def parse_time(value: object) -> datetime | None:
    """An ISO timestamp from the API (None, "" or a malformed value: None)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(start: object, end: object) -> str:
    """The time between two API timestamps ("" when either is missing)."""
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return ""
    return human_seconds((ended - began).total_seconds())


def human_seconds(seconds: float) -> str:
    """A duration as people read it: 0.4s, 12s, 3m 05s, 2h 10m."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def ago(when: datetime | None, now: datetime) -> str:
    """How long ago `when` was, coarsely ("not yet" for None)."""
    if when is None:
        return "not yet"
    seconds = max((now - when).total_seconds(), 0)
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"
