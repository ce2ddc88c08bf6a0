"""How a receiver knows a notification is BuildIt's, and fresh: HMAC-SHA256 over timestamp and body.

Each attempt sends

    X-BuildIt-Timestamp: 1764770087                  (Unix seconds when the attempt was signed)
    X-BuildIt-Signature: sha256=<hex>                (HMAC-SHA256, key = the notification's secret,
                                                      message = "<timestamp>." + the raw body)

A receiver recomputes the HMAC over the timestamp header, a dot and the body bytes exactly as
received, compares in constant time, and refuses a timestamp more than a few minutes from its
clock: a captured request cannot be replayed later, and the timestamp cannot be changed without
breaking the signature. `X-BuildIt-Delivery` (the same on every attempt of one delivery) lets it
drop a repeat it already handled. `verify` is the receiver's side, for tests and integrations
written in Python.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-BuildIt-Signature"
TIMESTAMP_HEADER = "X-BuildIt-Timestamp"
EVENT_HEADER = "X-BuildIt-Event"
DELIVERY_HEADER = "X-BuildIt-Delivery"
#: How far a receiver should let a timestamp be from its own clock (`verify`'s default).
TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-BuildIt-Signature value for `body` sent at `timestamp` (see the module docstring)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str, timestamp: str, signed: str, body: bytes, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    """Whether `signed` is `body`'s signature at `timestamp` and the timestamp is within
    `tolerance_s` of `now`: what a receiver checks before trusting a notification."""
    try:
        when = int(timestamp)
    except ValueError:
        return False
    if abs(now - when) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, when, body), signed)
