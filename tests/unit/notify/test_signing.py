"""controller.notify.signing: what receivers recompute."""

from __future__ import annotations

import hashlib
import hmac

from controller.notify.signing import signature, verify

BODY = b'{"event":"failed"}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"secret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature("secret", 1700000000, BODY) == f"sha256={expected}"


def test_verify_checks_body_secret_and_freshness() -> None:
    signed = signature("secret", 1700000000, BODY)
    assert verify("secret", "1700000000", signed, BODY, now=1700000100)
    assert not verify("secret", "1700000000", signed, BODY + b" ", now=1700000100)  # body changed
    assert not verify("other", "1700000000", signed, BODY, now=1700000100)  # wrong secret
    assert not verify("secret", "1700000001", signed, BODY, now=1700000100)  # timestamp changed
    assert not verify("secret", "1700000000", signed, BODY, now=1700000000 + 301)  # replayed later
    assert not verify("secret", "soon", signed, BODY, now=1700000000)
