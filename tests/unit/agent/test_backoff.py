"""Backoff: 0.1 s doubling to 5 s, jittered into [d/2, d], reset after a success; sleep_unless."""

from __future__ import annotations

import asyncio

import pytest

from agent.backoff import Backoff, sleep_unless


def test_doubles_up_to_the_maximum_without_jitter_at_the_top() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    assert [round(backoff.next(), 3) for _ in range(9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_jitter_stays_within_half_and_full_step() -> None:
    backoff = Backoff(rng=lambda: 0.0)
    assert backoff.next() == pytest.approx(0.05)
    assert backoff.next() == pytest.approx(0.1)


def test_reset_starts_over() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == pytest.approx(0.1)


async def test_sleep_unless_sleeps_the_whole_delay_when_nothing_happens() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sleep_unless(0.15, lambda: False) is False
    assert loop.time() - started >= 0.15


async def test_sleep_unless_ends_early_once_the_condition_holds() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    flag = False

    def later() -> None:
        nonlocal flag
        flag = True

    loop.call_later(0.05, later)
    assert await sleep_unless(30, lambda: flag) is True
    assert loop.time() - started < 1
