"""How the UI shows values: durations, short shas, timestamps, statuses (never by colour alone)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

FINISHED = frozenset({"succeeded", "failed", "cancelled", "skipped", "timed_out", "error"})

_ICONS = {
    "pending": "○",
    "queued": "◔",
    "blocked": "◌",
    "running": "◐",
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "⊘",
    "skipped": "–",
    "timed_out": "⏱",
    "error": "!",
    "online": "●",
    "offline": "○",
    "draining": "◑",
}


def status_icon(status: str) -> str:
    """A glyph per status, shown beside the word so colour is never the only signal."""
    return _ICONS.get(status, "?")


def status_word(status: str) -> str:
    """The status as a person reads it (`timed_out` -> `timed out`)."""
    return status.replace("_", " ")


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: Any) -> str:
    """ISO 8601 in UTC for `datetime` attributes and the client-side clock ('' when unset)."""
    moment = _as_datetime(value)
    return moment.astimezone(UTC).isoformat() if moment else ""


def timestamp(value: Any) -> str:
    """A compact UTC time for tables (`2026-11-27 21:05:03`); '—' when unset."""
    moment = _as_datetime(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def exact(value: Any) -> str:
    """The exact time with its zone, for a title (`2026-11-27 21:05:03 UTC`); the page's script
    replaces it with the viewer's local time and zone."""
    moment = _as_datetime(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def ago(value: Any, now: datetime | None = None) -> str:
    """How long ago, as people say it: `just now`, `42 s ago`, `3 min ago`, `5 h ago`, `2 days ago`,
    then the date. web/static/app.js words it the same as the page ticks (keep the two in step)."""
    moment = _as_datetime(value)
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    if days < 30:
        return "1 day ago" if days == 1 else f"{days} days ago"
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def seconds_text(total: float) -> str:
    """`0.4s`, `3s`, `2m 05s`, `1h 02m`: short enough for a table cell.

    Under a second gets a decimal: CI stages are often that quick, and "0s" says nothing.
    """
    if 0 <= total < 1:
        return f"{total:.1f}s"
    whole = max(int(total), 0)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def duration(started: Any, finished: Any = None, now: datetime | None = None) -> str:
    """How long something ran (until now while it still runs); '—' before it started."""
    start = _as_datetime(started)
    if start is None:
        return "—"
    end = _as_datetime(finished) or now or datetime.now(UTC)
    return seconds_text((end - start).total_seconds())


def short_sha(sha: str | None) -> str:
    """The first 8 hex digits, as Git tools show commits ('—' when the run has no commit)."""
    return sha[:8] if sha else "—"


def first_line(text: str | None, limit: int = 80) -> str:
    """The subject line of a commit message, cut to `limit` characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
