"""controller.notify.delivery: the retry schedule, and how a refusal reads in the log."""

from __future__ import annotations

from controller.notify.delivery import DeliveryPolicy, _refusal


def test_retries_back_off_exponentially_up_to_a_bound() -> None:
    policy = DeliveryPolicy(retry_base_s=10, max_delay_s=60)
    assert [policy.delay_s(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_a_refusal_keeps_a_short_printable_snippet() -> None:
    assert _refusal(500, b"  oops\n\x00there  ") == "HTTP 500: oops there"
    assert _refusal(404, b"") == "HTTP 404"
    assert _refusal(502, b"x" * 1000) == "HTTP 502: " + "x" * 200
    assert "redirect (not followed)" in _refusal(301, b"")
