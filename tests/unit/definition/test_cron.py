"""check_cron()/next_fire(): standard five-field cron, errors that name the field, UTC fire times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from controller.definition.cron import CronError, check_cron, next_fire


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(expr: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` fire times after `after`."""
    out: list[datetime] = []
    for _ in range(count):
        after = next_fire(expr, after)
        out.append(after)
    return out


# --- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * *",
        "*/15 * * * *",
        "0 3 * * 1-5",
        "0 3 * * MON-FRI",
        "0 3 * * mon-fri",
        "30 4 1,15 * *",
        "0 0 1 JAN,jul *",
        "0-30/10 8-18 * * *",
        "5/15 * * * *",
        "0 0 * * 7",
        "0 0 * * SUN",
        "0 0 * * MON-SUN",
        "0 0 29 2 *",
        "0 0 31 2 MON",  # day-of-month OR day-of-week: fires on Mondays in February
        "  0   3  *  *  *  ",
        "0\t3 * * *",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
        "@Daily",
    ],
)
def test_standard_expressions_are_accepted(expr: str) -> None:
    check_cron(expr)


# --- rejected, with the field named ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message", "field", "index"),
    [
        ("60 * * * *", "minute 60 is out of range (0-59)", "minute", 0),
        ("* 24 * * *", "hour 24 is out of range (0-23)", "hour", 2),
        ("* * 0 * *", "day-of-month 0 is out of range (1-31)", "day-of-month", 4),
        ("* * 32 * *", "day-of-month 32 is out of range (1-31)", "day-of-month", 4),
        ("* * * 13 *", "month 13 is out of range (1-12 or JAN-DEC)", "month", 6),
        ("0 3 * * 8", "day-of-week 8 is out of range (0-7 or SUN-SAT)", "day-of-week", 8),
        ("0 1,2,99 * * *", "hour 99 is out of range (0-23)", "hour", 6),  # points at the entry
        ("0 3 * * 1-9", "day-of-week 9 is out of range (0-7 or SUN-SAT)", "day-of-week", 10),
        ("50-10 * * * *", "minute range 50-10 runs backwards; write 50-59,0-10", "minute", 0),
        ("* * * NOV-FEB *", "month range NOV-FEB runs backwards; write NOV-DEC,JAN-FEB", "month", 6),
        ("* * * 11-2 *", "month range 11-2 runs backwards; write 11-12,1-2", "month", 6),
        (
            "0 0 * * FRI-MON",
            "day-of-week range FRI-MON runs backwards; write FRI-SAT,SUN-MON",
            "day-of-week",
            8,
        ),
        ("0 0 * * 5-1", "day-of-week range 5-1 runs backwards; write 5-6,0-1", "day-of-week", 8),
        ("*/0 * * * *", "minute step /0 must be between 1 and 60", "minute", 0),
        ("0 */25 * * *", "hour step /25 must be between 1 and 24", "hour", 2),
        ("1,,2 * * * *", "minute list '1,,2' has an empty entry", "minute", 2),
        (
            "0 0 * * MONDAY",
            "'MONDAY' is not a day-of-week name (use SUN, MON, TUE, WED, THU, FRI, SAT)",
            "day-of-week",
            8,
        ),
        (
            "0 0 * JANUARY *",
            "'JANUARY' is not a month name (use JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC)",
            "month",
            6,
        ),
        ("MON * * * *", "minute 'MON' is not a number (0-59)", "minute", 0),
        ("0 0 L * *", "day-of-month 'L' is not a number (1-31)", "day-of-month", 4),
        ("H * * * *", "minute 'H' is not a number (0-59)", "minute", 0),
        (
            "0 0 * * 5#2",
            "day-of-week '5#2' is not standard cron syntax: use numbers or names, '*', "
            "ranges a-b, lists a,b and steps */n or a-b/n",
            "day-of-week",
            8,
        ),
        (
            "0 0 ? * *",
            "day-of-month '?' is not standard cron syntax: use numbers, '*', "
            "ranges a-b, lists a,b and steps */n or a-b/n",
            "day-of-month",
            4,
        ),
        (
            "0 0 15W * *",
            "day-of-month '15W' is not standard cron syntax: use numbers, '*', "
            "ranges a-b, lists a,b and steps */n or a-b/n",
            "day-of-month",
            4,
        ),
        (
            "0 0 1-5-7 * *",
            "day-of-month '1-5-7' is not standard cron syntax: use numbers, '*', "
            "ranges a-b, lists a,b and steps */n or a-b/n",
            "day-of-month",
            4,
        ),
        (
            "0 0 30 2 *",
            "the schedule never fires: day-of-month 30 does not occur in month 2",
            "day-of-month",
            4,
        ),
        (
            "0 0 31 4,6,9,11 *",
            "the schedule never fires: day-of-month 31 does not occur in months 4,6,9,11",
            "day-of-month",
            4,
        ),
    ],
)
def test_bad_fields_are_named(expr: str, message: str, field: str, index: int) -> None:
    with pytest.raises(CronError) as caught:
        check_cron(expr)
    assert str(caught.value) == message
    assert caught.value.field == field
    assert caught.value.index == index


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("* * * *", "the schedule has 4 fields, cron takes 5: minute hour day-of-month month day-of-week"),
        (
            "0 * * * * *",
            "the schedule has 6 fields, cron takes 5: minute hour day-of-month month day-of-week "
            "(seconds and years are not supported)",
        ),
        (
            "0 0 3 * * * 2027",
            "the schedule has 7 fields, cron takes 5: minute hour day-of-month month day-of-week "
            "(seconds and years are not supported)",
        ),
        ("@reboot", "'@reboot' is not a schedule: pipelines start on pushes, on schedules or by hand"),
        ("@nightly", "unknown schedule '@nightly'; use @hourly, @daily, @weekly, @monthly or @yearly"),
    ],
)
def test_bad_expressions_as_a_whole(expr: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        check_cron(expr)
    assert str(caught.value) == message
    assert caught.value.field is None
    assert caught.value.index == 0


def test_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="minute 60"):
        check_cron("60 * * * *")


# --- next_fire ---------------------------------------------------------------------------------


def test_every_fifteen_minutes_crosses_the_hour_and_the_month() -> None:
    assert fires("*/15 * * * *", utc(2026, 1, 31, 23, 40), 3) == [
        utc(2026, 1, 31, 23, 45),
        utc(2026, 2, 1, 0, 0),
        utc(2026, 2, 1, 0, 15),
    ]


def test_strictly_after_even_on_a_fire_time() -> None:
    assert next_fire("*/15 * * * *", utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)
    assert next_fire("*/15 * * * *", utc(2026, 1, 1, 0, 14, 59, 999999)) == utc(2026, 1, 1, 0, 15)
    assert next_fire("*/15 * * * *", utc(2026, 1, 1, 0, 15, 0, 1)) == utc(2026, 1, 1, 0, 30)


def test_weekdays_skip_the_weekend() -> None:
    # 2026-01-02 is a Friday.
    friday = utc(2026, 1, 2, 3, 0)
    assert fires("0 3 * * 1-5", friday, 2) == [utc(2026, 1, 5, 3, 0), utc(2026, 1, 6, 3, 0)]
    assert fires("0 3 * * MON-FRI", friday, 2) == [utc(2026, 1, 5, 3, 0), utc(2026, 1, 6, 3, 0)]


def test_day_31_skips_short_months() -> None:
    assert fires("0 0 31 * *", utc(2026, 1, 31, 0, 0), 3) == [
        utc(2026, 3, 31),
        utc(2026, 5, 31),
        utc(2026, 7, 31),
    ]


def test_february_29_waits_for_a_leap_year_and_skips_2100() -> None:
    assert next_fire("0 12 29 2 *", utc(2026, 3, 1)) == utc(2028, 2, 29, 12, 0)
    assert next_fire("0 12 29 2 *", utc(2096, 3, 1)) == utc(2104, 2, 29, 12, 0)


def test_year_boundary() -> None:
    assert next_fire("@yearly", utc(2026, 12, 31, 23, 59, 59)) == utc(2027, 1, 1)
    assert next_fire("59 23 31 12 *", utc(2026, 12, 31, 23, 59)) == utc(2027, 12, 31, 23, 59)


def test_aliases() -> None:
    start = utc(2026, 1, 7, 10, 30)  # a Wednesday
    assert next_fire("@hourly", start) == utc(2026, 1, 7, 11, 0)
    assert next_fire("@daily", start) == utc(2026, 1, 8)
    assert next_fire("@midnight", start) == utc(2026, 1, 8)
    assert next_fire("@weekly", start) == utc(2026, 1, 11)  # Sunday
    assert next_fire("@monthly", start) == utc(2026, 2, 1)
    assert next_fire("@annually", start) == utc(2027, 1, 1)


def test_day_of_month_or_day_of_week_as_in_cron() -> None:
    # Both restricted: either matches (the 13th, or any Friday), not only Friday the 13th.
    start = utc(2026, 2, 1)  # a Sunday
    assert fires("0 0 13 * FRI", start, 3) == [utc(2026, 2, 6), utc(2026, 2, 13), utc(2026, 2, 20)]


def test_sunday_is_0_and_7_and_closes_a_range() -> None:
    start = utc(2026, 1, 7)  # a Wednesday
    sunday = utc(2026, 1, 11)
    assert next_fire("0 0 * * 0", start) == sunday
    assert next_fire("0 0 * * 7", start) == sunday
    assert next_fire("0 0 * * SUN", start) == sunday
    assert fires("0 0 * * SAT-SUN", start, 2) == [utc(2026, 1, 10), sunday]
    assert fires("0 0 * * FRI-SUN", start, 3) == [utc(2026, 1, 9), utc(2026, 1, 10), sunday]


def test_an_equal_range_is_one_value_as_in_cron() -> None:
    # croniter alone would read 5-5 as every minute.
    assert fires("5-5 * * * *", utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 1, 5)]


def test_steps_from_a_start_and_within_a_range() -> None:
    assert fires("5/20 * * * *", utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 0, 5),
        utc(2026, 1, 1, 0, 25),
        utc(2026, 1, 1, 0, 45),
        utc(2026, 1, 1, 1, 5),
    ]
    assert fires("0 9-17/4 * * *", utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 9),
        utc(2026, 1, 1, 13),
        utc(2026, 1, 1, 17),
        utc(2026, 1, 2, 9),
    ]


def test_schedules_are_utc_whatever_the_zone_of_after() -> None:
    # 2026-03-29 is the spring-forward day in Berlin; UTC has no gap: 03:00 UTC fires as usual.
    berlin = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 00:30 UTC
    fire = next_fire("0 3 * * *", berlin)
    assert fire == utc(2026, 3, 29, 3, 0)
    assert fire.utcoffset() == timedelta(0)
    plus_five = datetime(2026, 1, 1, 4, 0, tzinfo=timezone(timedelta(hours=5)))  # 23:00 UTC the day before
    assert next_fire("30 23 * * *", plus_five) == utc(2025, 12, 31, 23, 30)


def test_every_hour_across_a_dst_change_is_evenly_spaced() -> None:
    # US fall-back day: in UTC the hours neither repeat nor vanish.
    times = fires("0 * * * *", utc(2026, 11, 1, 4, 30), 4)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 3


def test_result_is_timezone_aware_utc() -> None:
    fire = next_fire("@hourly", utc(2026, 1, 1))
    assert fire.tzinfo is not None
    assert fire.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("@hourly", datetime(2026, 1, 1))


def test_next_fire_refuses_a_bad_expression() -> None:
    with pytest.raises(CronError, match="hour 24"):
        next_fire("0 24 * * *", utc(2026, 1, 1))
