"""Times and durations as the client verbs print them (controller.cli.output)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.cli.output import ago, duration, escape, human_seconds, parse_time

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0s"), (3.25, "3.2s"), (-1, "0.0s"), (12.9, "12s"), (185, "3m 05s"), (7800, "2h 10m")],
)
def test_human_seconds(seconds: float, text: str) -> None:
    assert human_seconds(seconds) == text


@pytest.mark.parametrize(
    ("back", "text"),
    [(timedelta(seconds=5), "5s ago"), (timedelta(minutes=3), "3m ago"), (timedelta(hours=5), "5h ago")],
)
def test_ago(back: timedelta, text: str) -> None:
    assert ago(NOW - back, NOW) == text
    assert ago(NOW - timedelta(days=3), NOW) == "3d ago"
    assert ago(None, NOW) == "not yet"
    assert ago(NOW + timedelta(seconds=5), NOW) == "0s ago"  # a clock a little ahead of ours


def test_parse_time_and_duration_read_the_api_timestamps() -> None:
    assert parse_time("2026-12-03T12:00:00+00:00") == NOW
    assert parse_time("2026-12-03T12:00:00Z") == NOW
    assert parse_time(None) is None and parse_time("") is None and parse_time("yesterday") is None
    assert duration("2026-12-03T12:00:00+00:00", "2026-12-03T12:01:05+00:00") == "1m 05s"
    assert duration("2026-12-03T12:00:00+00:00", None) == ""


def test_escape_keeps_user_text_from_being_read_as_markup() -> None:
    assert escape("[red]not a style[/]") == "\\[red]not a style\\[/]"
