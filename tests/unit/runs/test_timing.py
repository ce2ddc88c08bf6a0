"""A run's duration counts the time its stages ran, not the idle time before a retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.runs.timing import run_timing

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stage(queued: float | None, started: float | None, finished: float | None) -> dict[str, Any]:
    return {
        "queued_at": None if queued is None else at(queued),
        "started_at": None if started is None else at(started),
        "finished_at": None if finished is None else at(finished),
    }


def test_a_retry_an_hour_later_does_not_count_the_idle_hour() -> None:
    # a: 0-10 s; b failed 10-20 s, was retried at 3600 s: queued 2 s, then ran 5 s.
    timing = run_timing([stage(0, 0, 10), stage(3600, 3602, 3607)], now=at(4000))
    assert timing.duration_s == 15
    assert timing.queued_s == 2
    assert timing.running_since is None


def test_parallel_stages_count_once_and_waiting_while_another_runs_is_not_queued_time() -> None:
    timing = run_timing([stage(0, 1, 11), stage(0, 5, 15), stage(12, 20, 30)], now=at(100))
    # Ran 1-15 and 20-30; waited 0-1 (nothing ran) and 15-20 (12-15 overlaps b running).
    assert timing.duration_s == 24
    assert timing.queued_s == 6


def test_a_running_stage_keeps_the_clock_open() -> None:
    timing = run_timing([stage(0, 0, 10), stage(10, 12, None)], now=at(30))
    assert (timing.ran_s, timing.running_since, timing.duration_s) == (10, at(12), 28)
    assert timing.queued_s == 2


def test_iso_strings_as_the_json_has_them_and_nothing_started_yet() -> None:
    queued = {"queued_at": at(0).isoformat(), "started_at": None, "finished_at": None}
    waiting = run_timing([queued], now=at(7))
    assert waiting.duration_s is None and waiting.queued_s == 7 and not waiting.started
    assert run_timing([], now=at(1)).duration_s is None


def test_a_stage_cancelled_in_the_queue_waited_until_it_ended() -> None:
    timing = run_timing([stage(0, None, 4)], now=at(50))
    assert timing.duration_s is None and timing.queued_s == 4
