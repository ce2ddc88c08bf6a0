"""agent.client.classify: the one reading of gRPC status codes, checked for every code gRPC has."""

from __future__ import annotations

import grpc
import pytest

from agent.client import FailureKind, classify

LEASE_GONE = FailureKind.LEASE_GONE
REAUTH = FailureKind.REAUTHENTICATE
RETRY = FailureKind.RETRY
FATAL = FailureKind.FATAL

#: code -> (kind for a call about one lease, kind for any other call); the controller's error tree
#: maps to these codes (NotFound, Invalid, Conflict, AlreadyExists, LeaseLost, Unauthenticated,
#: Forbidden, TooLarge, Unavailable; INTERNAL/UNKNOWN for the unexpected).
EXPECTED: dict[grpc.StatusCode, tuple[FailureKind, FailureKind]] = {
    grpc.StatusCode.OK: (FATAL, FATAL),  # never a failure: nothing to retry
    grpc.StatusCode.CANCELLED: (RETRY, RETRY),
    grpc.StatusCode.UNKNOWN: (RETRY, RETRY),
    grpc.StatusCode.INVALID_ARGUMENT: (FATAL, FATAL),
    grpc.StatusCode.DEADLINE_EXCEEDED: (RETRY, RETRY),
    grpc.StatusCode.NOT_FOUND: (LEASE_GONE, FATAL),
    grpc.StatusCode.ALREADY_EXISTS: (FATAL, FATAL),
    grpc.StatusCode.PERMISSION_DENIED: (FATAL, FATAL),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (FATAL, FATAL),
    grpc.StatusCode.FAILED_PRECONDITION: (FATAL, FATAL),
    grpc.StatusCode.ABORTED: (LEASE_GONE, RETRY),
    grpc.StatusCode.OUT_OF_RANGE: (FATAL, FATAL),
    grpc.StatusCode.UNIMPLEMENTED: (FATAL, FATAL),
    grpc.StatusCode.INTERNAL: (RETRY, RETRY),
    grpc.StatusCode.UNAVAILABLE: (RETRY, RETRY),
    grpc.StatusCode.DATA_LOSS: (FATAL, FATAL),
    grpc.StatusCode.UNAUTHENTICATED: (REAUTH, REAUTH),
}


def test_the_table_covers_every_grpc_status_code() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_every_code_has_one_kind_per_call_scope(code: grpc.StatusCode) -> None:
    lease_call, other_call = EXPECTED[code]
    assert classify(code.name, lease_scoped=True) is lease_call
    assert classify(code.name, lease_scoped=False) is other_call


def test_a_code_this_build_does_not_know_is_fatal() -> None:
    # Repeating a call whose failure nobody understands could loop forever; giving up cannot.
    assert classify("SOMETHING_NEW", lease_scoped=True) is FATAL
    assert classify("SOMETHING_NEW", lease_scoped=False) is FATAL


def test_only_lease_scoped_calls_can_lose_a_lease() -> None:
    kinds = {classify(code.name, lease_scoped=False) for code in grpc.StatusCode}
    assert LEASE_GONE not in kinds
