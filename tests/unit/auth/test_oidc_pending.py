"""PendingLogin: what the session keeps between `begin` and `finish`."""

from __future__ import annotations

import json

import pytest

from controller.auth.oidc import PENDING_LOGIN_TTL_S, PendingLogin
from controller.errors import Unauthenticated

PENDING = PendingLogin(
    state="s" * 43,
    nonce="n" * 43,
    code_verifier="v" * 64,
    redirect_uri="https://ci.example/login/oidc/callback",
    created_at=1_700_000_000.5,
)


def test_round_trips_through_json() -> None:
    data = PENDING.to_dict()
    assert set(data) == {"state", "nonce", "code_verifier", "redirect_uri", "created_at"}
    assert len(json.dumps(data)) < 400  # small enough for any session store
    assert PendingLogin.from_dict(json.loads(json.dumps(data))) == PENDING


def test_integer_timestamp_is_accepted() -> None:
    assert PendingLogin.from_dict({**PENDING.to_dict(), "created_at": 1_700_000_000}).created_at == 1.7e9


@pytest.mark.parametrize(
    "damage",
    [
        {"state": None},
        {"state": ""},
        {"nonce": 7},
        {"code_verifier": ["v"]},
        {"created_at": "yesterday"},
        {"created_at": True},
    ],
)
def test_malformed_dict_is_unauthenticated(damage: dict[str, object]) -> None:
    with pytest.raises(Unauthenticated, match="malformed; sign in again"):
        PendingLogin.from_dict({**PENDING.to_dict(), **damage})


def test_incomplete_dict_is_unauthenticated() -> None:
    data = PENDING.to_dict()
    del data["nonce"]
    with pytest.raises(Unauthenticated, match="incomplete; sign in again"):
        PendingLogin.from_dict(data)


def test_expiry() -> None:
    start = PENDING.created_at
    assert not PENDING.expired(start)
    assert not PENDING.expired(start + PENDING_LOGIN_TTL_S - 1)
    assert PENDING.expired(start + PENDING_LOGIN_TTL_S + 1)
    assert PENDING.expired(start - 3600)  # made "in the future": a clock jump or a forged dict


def test_verifier_is_not_in_repr() -> None:
    assert PENDING.code_verifier not in repr(PENDING)
