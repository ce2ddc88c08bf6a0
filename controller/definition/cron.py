"""Cron schedules for `trigger "cron"`: checking an expression and finding its next fire time.

croniter does the calendar arithmetic (month lengths, leap years, the day-of-month OR day-of-week rule).
This module first holds an expression to the standard five-field syntax and says which field is wrong,
because croniter alone would let through what users of other CI systems do not expect: a seconds or a
year field, Quartz/Jenkins extensions (`L`, `W`, `#`, `?`, `H`, `R`), and ranges read unlike cron reads
them (`5-5` would be every minute, `5-1` would wrap around). What reaches croniter is a normalized
expression with numbers only, so both agree on what it means.

Schedules are evaluated in UTC: no daylight-saving gaps or repeats, the same on every controller.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

# croniter ships no type information; this module is its only importer and types what it returns.
from croniter import CroniterBadDateError, croniter  # type: ignore[import-untyped]

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

EXAMPLE = '"*/15 * * * *" (every 15 minutes) or "0 3 * * 1-5" (03:00 UTC, Monday to Friday)'

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# One list entry: `*`, a value or a range, then an optional step. Values are numbers or names.
_ENTRY = re.compile(r"(?:(\*)|([0-9]+|[A-Za-z]+)(?:-([0-9]+|[A-Za-z]+))?)(?:/([0-9]+))?\Z")
# A fixed start for the "does it ever fire" check: the Gregorian calendar repeats every 400 years.
_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)


class CronError(ValueError):
    """A cron expression that BuildIt will not run; the message names the field and what it allows.

    `field` is the field's name (None when the problem is the whole expression) and `index` the
    character offset of the offending field or list entry in the expression, so diagnostics can
    point at it.
    """

    def __init__(self, message: str, field: str | None = None, index: int = 0) -> None:
        super().__init__(message)
        self.field = field
        self.index = index


@dataclass(frozen=True)
class _Field:
    """The values one field allows, and the names it accepts for them (month and day-of-week)."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    def allowed(self) -> str:
        numbers = f"{self.low}-{self.high}"
        if not self.names:
            return numbers
        return f"{numbers} or {self.names[0]}-{self.names[-1]}"


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS, name_base=1),
    # 0 and 7 are both Sunday, as in every cron since Vixie cron.
    _Field("day-of-week", 0, 7, _DAYS),
)


def _value(word: str, field: _Field, index: int) -> int:
    """A number or a name in `field`, checked against its range."""
    if word.isdigit():
        number = int(word)
        if not field.low <= number <= field.high:
            raise CronError(f"{field.name} {word} is out of range ({field.allowed()})", field.name, index)
        return number
    upper = word.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.name_base
    if field.names:
        raise CronError(
            f"'{word}' is not a {field.name} name (use {', '.join(field.names)})", field.name, index
        )
    raise CronError(f"{field.name} '{word}' is not a number ({field.allowed()})", field.name, index)


def _normalize_field(text: str, field: _Field, start: int) -> str:
    """One field as numbers croniter reads the way cron does; CronError if it is not standard cron.

    `start` is the field's offset in the expression, so an error can point at the entry at fault.
    """
    entries: list[str] = []
    index = start
    for entry in text.split(","):
        _normalize_entry(entry, text, field, index, entries)
        index += len(entry) + 1
    return ",".join(entries)


def _normalize_entry(entry: str, text: str, field: _Field, index: int, entries: list[str]) -> None:
    """Append one list entry (`*/5`, `MON-FRI`, `7`) of `field` to `entries`, normalized."""
    if not entry:
        raise CronError(f"{field.name} list '{text}' has an empty entry", field.name, index)
    match = _ENTRY.match(entry)
    if match is None:
        forms = "numbers or names" if field.names else "numbers"
        raise CronError(
            f"{field.name} '{entry}' is not standard cron syntax: use {forms}, '*', "
            "ranges a-b, lists a,b and steps */n or a-b/n",
            field.name,
            index,
        )
    star, first, last, step = match.groups()
    span = field.high - field.low + 1
    if step is not None and not 1 <= int(step) <= span:
        raise CronError(f"{field.name} step /{step} must be between 1 and {span}", field.name, index)
    suffix = f"/{int(step)}" if step is not None else ""
    if star:
        entries.append("*" + suffix)
        return
    low = _value(first, field, index)
    if last is None:
        # `5/15` is "from 5, every 15", as croniter and most crons read it.
        entries.append(f"{low}{suffix}")
        return
    high = _value(last, field, index + len(first) + 1)
    if field.name == "day-of-week" and high == 0 and low > 0:
        high = 7  # MON-SUN: Sunday closes the week.
    if high < low:
        # Suggest the wrap-around as two ranges, in the user's own style (numbers or names).
        top_value = 6 if field.name == "day-of-week" else field.high
        top = field.names[-1] if field.names and not first.isdigit() else str(top_value)
        bottom = field.names[0] if field.names and not last.isdigit() else str(field.low)
        raise CronError(
            f"{field.name} range {first}-{last} runs backwards; write {first}-{top},{bottom}-{last}",
            field.name,
            index,
        )
    # croniter reads an equal range such as 5-5 as the whole cycle; cron means just 5.
    entries.append(f"{low}{suffix}" if low == high else f"{low}-{high}{suffix}")


@functools.lru_cache(maxsize=1024)
def _normalize(expr: str) -> str:
    """The expression as five numeric fields for croniter; raises CronError naming what is wrong."""
    text = expr.strip()
    if not text:
        raise CronError("the schedule is empty")
    if text.startswith("@"):
        alias = text.lower()
        if alias == "@reboot":
            raise CronError("'@reboot' is not a schedule: pipelines start on pushes, on schedules or by hand")
        if alias not in ALIASES:
            raise CronError(f"unknown schedule '{text}'; use @hourly, @daily, @weekly, @monthly or @yearly")
        return ALIASES[alias]
    parts = [(m.group(), m.start()) for m in re.finditer(r"\S+", expr)]
    if len(parts) != len(_FIELDS):
        extra = " (seconds and years are not supported)" if len(parts) in (6, 7) else ""
        raise CronError(
            f"the schedule has {len(parts)} field{'s' if len(parts) != 1 else ''}, cron takes 5: "
            f"minute hour day-of-month month day-of-week{extra}"
        )
    fields = [
        _normalize_field(part, field, index) for (part, index), field in zip(parts, _FIELDS, strict=True)
    ]
    normalized = " ".join(fields)
    try:
        croniter(normalized, _PROBE_START).get_next(datetime)
    except CroniterBadDateError:
        (day, day_index), (month, _) = parts[2], parts[3]
        months = "months" if "," in month or "-" in month else "month"
        raise CronError(
            f"the schedule never fires: day-of-month {day} does not occur in {months} {month}",
            "day-of-month",
            day_index,
        ) from None
    return normalized


def check_cron(expr: str) -> None:
    """Raise CronError unless `expr` is a standard five-field cron expression or an @alias that fires.

    Validation calls this so a bad schedule is a diagnostic when the file is pushed, not a silent
    schedule that never runs.
    """
    _normalize(expr)


def next_fire(expr: str, after: datetime) -> datetime:
    """The first time strictly after `after` that `expr` fires, in UTC (tz-aware in and out).

    `after` may be in any time zone; the schedule itself is always read in UTC.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("next_fire needs a timezone-aware datetime (UTC)")
    fire = croniter(_normalize(expr), after.astimezone(UTC)).get_next(datetime)
    if not isinstance(fire, datetime):  # pragma: no cover - croniter returns what it was asked for
        raise TypeError(f"croniter returned {fire!r}")
    return fire.astimezone(UTC)
