"""How long a run took: the time its stages ran, and apart from it the time they waited for an agent.

Why not `finished_at - started_at`: a stage retried an hour after the run failed makes the run end
an hour after it started, though it ran for a minute; that hour is idle, not build time. So a
run's duration is the time at least one of its stages was running (the union of their
`started_at`–`finished_at` intervals, the current attempt of each), and its queued time the time
at least one stage waited in the queue (`queued_at`–`started_at`) while none ran. Before any stage
started, a run has no duration. Earlier attempts of a retried stage are not kept, so their time
does not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["RunTiming", "run_timing", "timing_json"]

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class RunTiming:
    """A run's time, as of `now`: what ran (`ran_s`, plus since `running_since` when a stage runs)."""

    #: Seconds of run time that ended (the running stretch still open, if any, is not in it).
    ran_s: float
    #: Start of the stretch of run time still going on (a stage runs), else None.
    running_since: datetime | None
    #: Seconds stages waited for an agent while none ran.
    queued_s: float
    #: When the times were taken.
    now: datetime
    #: Whether any stage has started (before that the run has no duration).
    started: bool

    @property
    def duration_s(self) -> float | None:
        """Seconds at least one stage ran, up to `now`; None before any stage started."""
        if not self.started:
            return None
        open_s = (self.now - self.running_since).total_seconds() if self.running_since else 0.0
        return self.ran_s + max(open_s, 0.0)


def _moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _minus(intervals: list[Interval], holes: list[Interval]) -> float:
    """Seconds of `intervals` (merged, sorted) outside `holes` (merged, sorted)."""
    total = 0.0
    for start, end in intervals:
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                total += (hole_start - cursor).total_seconds()
            cursor = max(cursor, hole_end)
            if cursor >= end:
                break
        if cursor < end:
            total += (end - cursor).total_seconds()
    return total


def run_timing(stages: Iterable[Mapping[str, Any]], now: datetime | None = None) -> RunTiming:
    """The timing of a run from its stages' `queued_at`, `started_at` and `finished_at`
    (datetimes or ISO strings, as rows or JSON have them)."""
    now = now or datetime.now(UTC)
    running: list[Interval] = []
    waiting: list[Interval] = []
    still_running = False
    for stage in stages:
        queued = _moment(stage.get("queued_at"))
        started = _moment(stage.get("started_at"))
        finished = _moment(stage.get("finished_at"))
        if started is not None:
            still_running = still_running or finished is None
            running.append((started, max(finished or now, started)))
        if queued is not None:
            until = started or finished or now
            if until > queued:
                waiting.append((queued, until))
    ran = _union(running)
    since: datetime | None = None
    closed = ran
    if still_running:  # the stretch that reaches now is still going on
        current = next((iv for iv in ran if iv[0] <= now <= iv[1]), None)
        if current is not None:
            since = current[0]
            closed = [iv for iv in ran if iv != current]
    ran_s = sum((end - start).total_seconds() for start, end in closed)
    return RunTiming(ran_s, since, _minus(_union(waiting), ran), now, bool(ran))


def timing_json(timing: RunTiming, finished: bool) -> dict[str, float | None]:
    """`duration_s` and `queued_s` for API answers: set once the run has finished, null while it
    runs (a reading of a run does not change while nothing happens to it)."""
    if not finished:
        return {"duration_s": None, "queued_s": None}
    duration = timing.duration_s
    return {
        "duration_s": None if duration is None else round(duration, 3),
        "queued_s": round(timing.queued_s, 3),
    }
