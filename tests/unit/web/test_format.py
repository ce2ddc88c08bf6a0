"""How the UI formats values: durations, shas, timestamps, statuses (icon + word)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.web import format as fmt

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_durations() -> None:
    assert fmt.duration(None) == "—"
    assert fmt.duration(T0, T0 + timedelta(seconds=7)) == "7s"
    assert fmt.duration(T0, T0 + timedelta(milliseconds=420)) == "0.4s"
    assert fmt.duration(T0, T0) == "0.0s"
    assert fmt.duration(T0, T0 + timedelta(minutes=2, seconds=5)) == "2m 05s"
    assert fmt.duration(T0, T0 + timedelta(hours=1, minutes=2)) == "1h 02m"
    assert fmt.duration(T0.isoformat(), now=T0 + timedelta(seconds=3)) == "3s"  # still running


def test_statuses_have_a_word_and_an_icon() -> None:
    assert fmt.status_word("timed_out") == "timed out"
    assert len({fmt.status_icon(s) for s in ("succeeded", "failed", "running", "cancelled")}) == 4
    assert fmt.status_icon("something-new") == "?"


def test_values() -> None:
    assert fmt.short_sha("0123456789abcdef") == "01234567" and fmt.short_sha("") == "—"
    assert fmt.first_line("subject\n\nbody") == "subject" and fmt.first_line(None) == ""
    assert fmt.first_line("x" * 100, 10) == "x" * 9 + "…"
    assert fmt.timestamp(T0) == "2026-01-02 03:04:05" and fmt.timestamp(None) == "—"
    assert fmt.iso(datetime(2026, 1, 2)) == "2026-01-02T00:00:00+00:00"
