"""Failed sign-ins back off per user name and per address."""

from __future__ import annotations

import pytest

from controller.auth.throttle import LoginThrottle
from controller.errors import TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_free_failures_then_doubling_waits() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        throttle.check("alice", "10.0.0.1")
        throttle.failed("alice", "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("alice", "10.0.0.1")
    assert refused.value.retry_after_s == pytest.approx(1.0)
    clock.now += 1.01
    throttle.check("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    with pytest.raises(TooManyRequests) as again:
        throttle.check("alice", "10.0.0.1")
    assert again.value.retry_after_s == pytest.approx(2.0)


def test_the_address_is_slowed_down_across_user_names() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for index in range(5):
        throttle.failed(f"user{index}", "10.0.0.9")
    with pytest.raises(TooManyRequests):
        throttle.check("someone-else", "10.0.0.9")
    throttle.check("someone-else", "10.0.0.10")  # another address is not affected


def test_a_user_is_slowed_down_across_addresses_and_success_clears_it() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for index in range(5):
        throttle.failed("Bob", f"10.0.1.{index}")
    with pytest.raises(TooManyRequests):
        throttle.check("bob", "10.0.2.1")
    throttle.succeeded("bob")
    throttle.check("bob", "10.0.2.1")


def test_failures_are_forgotten_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock, window_s=60)
    for _ in range(8):
        throttle.failed("carol", "10.0.0.3")
    clock.now += 61
    throttle.check("carol", "10.0.0.3")


def test_the_wait_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock, max_delay_s=30)
    for _ in range(40):
        throttle.failed("dave", "10.0.0.4")
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("dave", "10.0.0.4")
    assert refused.value.retry_after_s <= 30
