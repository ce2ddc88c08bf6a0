"""THE error tree of the controller, and its two mapping tables: to HTTP statuses and to gRPC codes.

Operations (run commands, services, the scheduler) raise these and nothing transport-specific;
every door maps them through the tables below and nowhere else, so one refusal has the same
meaning on REST, gRPC, the web UI and the CLI. Messages are shown to users as they are: they say
what is wrong and how to fix it, and never carry a secret.

This module imports no transport library: the gRPC table names codes by their `grpc.StatusCode`
member names, which `controller.rpc.errors` turns into real codes.
"""

from __future__ import annotations

from typing import Any


class BuildItError(Exception):
    """A refusal a user or an agent can act on; subclasses say which kind."""

    #: HTTP status and gRPC status-code name of this kind (see the tables at the bottom).
    kind = "error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        #: Structured detail for API clients (never secrets), e.g. {"diagnostics": [...]}.
        self.extra = extra


class NotFound(BuildItError):
    """The thing named does not exist (or the caller may not know that it does)."""

    kind = "not_found"


class Invalid(BuildItError):
    """The input is wrong; fixing it (as the message says) makes the request succeed."""

    kind = "invalid"


class Unprocessable(Invalid):
    """Well-formed input whose content cannot be used (a pipeline file with errors)."""

    kind = "unprocessable"


class Conflict(BuildItError):
    """The thing is not in a state that allows this now (a finished run cannot be cancelled)."""

    kind = "conflict"


class AlreadyExists(Conflict):
    """A create whose name or key is taken."""

    kind = "already_exists"


class LeaseLost(BuildItError):
    """An agent wrote to a lease it no longer holds (expired, re-leased, cancelled): stop the stage."""

    kind = "lease_lost"


class Unauthenticated(BuildItError):
    """No credentials, or credentials that are not (any more) valid."""

    kind = "unauthenticated"


class Forbidden(BuildItError):
    """Valid credentials without the right for this operation."""

    kind = "forbidden"


class TooLarge(BuildItError):
    """The input exceeds a documented limit."""

    kind = "too_large"


class TooManyRequests(BuildItError):
    """Too many attempts (failed logins) from one user or address: wait `retry_after_s` and try again."""

    kind = "too_many_requests"

    def __init__(self, message: str, retry_after_s: float = 1.0, **extra: Any) -> None:
        super().__init__(message, **extra)
        #: Sent as HTTP `Retry-After` (whole seconds, rounded up).
        self.retry_after_s = retry_after_s


class Unavailable(BuildItError):
    """A dependency (database, remote repository) cannot be reached now; retrying later may work."""

    kind = "unavailable"


#: Error kind -> HTTP status (REST and the web UI).
HTTP_STATUS: dict[str, int] = {
    "not_found": 404,
    "invalid": 400,
    "unprocessable": 422,
    "conflict": 409,
    "already_exists": 409,
    "lease_lost": 409,
    "unauthenticated": 401,
    "forbidden": 403,
    "too_large": 413,
    "too_many_requests": 429,
    "unavailable": 503,
    "error": 500,
}

#: Error kind -> gRPC status code name (`grpc.StatusCode[name]`, both services).
GRPC_CODE: dict[str, str] = {
    "not_found": "NOT_FOUND",
    "invalid": "INVALID_ARGUMENT",
    "unprocessable": "INVALID_ARGUMENT",
    "conflict": "FAILED_PRECONDITION",
    "already_exists": "ALREADY_EXISTS",
    "lease_lost": "ABORTED",
    "unauthenticated": "UNAUTHENTICATED",
    "forbidden": "PERMISSION_DENIED",
    "too_large": "RESOURCE_EXHAUSTED",
    "too_many_requests": "RESOURCE_EXHAUSTED",
    "unavailable": "UNAVAILABLE",
    "error": "INTERNAL",
}

#: Every concrete kind, for tests that check each one on each door.
KINDS: tuple[type[BuildItError], ...] = (
    NotFound,
    Invalid,
    Unprocessable,
    Conflict,
    AlreadyExists,
    LeaseLost,
    Unauthenticated,
    Forbidden,
    TooLarge,
    TooManyRequests,
    Unavailable,
)
