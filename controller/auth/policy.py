"""The policy point: who is calling, and may they do what the route declares.

(First step: the `caller` dependency every handler can take. Authentication and the permission
check land next; until then every request acts as the default tenant's admin, as before.)
"""

from __future__ import annotations

from litestar.connection import ASGIConnection

from controller.auth.caller import Caller
from controller.auth.permissions import Role
from controller.deps import Deps

STATE_KEY = "caller"


def caller_of(connection: ASGIConnection, deps: Deps) -> Caller:  # type: ignore[type-arg]
    """The request's caller as the policy point established it."""
    caller = connection.scope.get("state", {}).get(STATE_KEY)
    if isinstance(caller, Caller):
        return caller
    return Caller("anonymous", "anonymous", deps.org, deps.tenant, Role.ADMIN)
