"""Backoff: 0.1 s doubling to 5 s, jittered into [d/2, d], reset after a success."""

from __future__ import annotations

import pytest

from agent.backoff import Backoff


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
