"""Authentication and authorization of BuildItService calls: the gRPC face of the policy point.

Callers send `authorization: Bearer <API key>` and optionally `x-buildit-tenant: org/tenant`
metadata. The guard checks the method's declared permission (controller.rpc.permissions) before
the servicer runs, and leaves the caller in `current_caller` for the servicer's scoped parts.
Undeclared methods are refused (fail closed).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from controller.auth.authenticate import Authenticator, utcnow
from controller.auth.caller import Caller
from controller.auth.permissions import Permission
from controller.auth.policy import Policy
from controller.errors import Forbidden, Unauthenticated
from controller.rpc.auth import AGENT_PREFIX, bearer_token
from controller.rpc.permissions import method_permission
from controller.rpc.wrapping import Guard

current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("current_caller")


class _Metadata:
    """Just enough of a connection for the policy point's tenant choice."""

    def __init__(self, metadata: Any, peer: str) -> None:
        self.headers = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
        self.query_params: dict[str, str] = {}
        self.client = None
        self.peer = peer


class UserAuth:
    """Guards every non-agent method: a valid API key with the method's permission."""

    def __init__(self, policy: Policy, authenticator: Authenticator) -> None:
        self.policy = policy
        self.authenticator = authenticator

    def applies(self, method: str) -> bool:
        """Every method but the AgentService's (AgentAuth guards those) and the public ones."""
        permission = method_permission(method)
        return not method.startswith(AGENT_PREFIX) and permission is not Permission.PUBLIC

    def guard_for(self, method: str) -> Guard:
        """A guard checking `method`'s declared permission."""
        permission = method_permission(method)

        @contextlib.asynccontextmanager
        async def guard(context: aio.ServicerContext) -> AsyncIterator[None]:
            if permission is None:
                raise Forbidden(f"{method} declares no permission; it is closed until it does")
            await self.authorize(context, permission)
            yield

        return guard

    async def authorize(self, context: aio.ServicerContext, permission: Permission) -> None:
        """Authenticate, pick the tenant, check the permission; the caller is `current_caller` after."""
        token = bearer_token(context.invocation_metadata())
        principal = await self.authenticator.by_key(token, utcnow()) if token else None
        if principal is None:
            raise Unauthenticated(
                "send `authorization: Bearer <API key>` metadata (create a key with `buildit login` "
                "or POST /api/v1/apikeys)"
            )
        meta = _Metadata(context.invocation_metadata(), context.peer())
        caller = await self.policy.caller(meta, principal)  # type: ignore[arg-type]
        caller.address = _peer_host(context.peer())
        self.policy.check(caller, permission)
        current_caller.set(caller)


def _peer_host(peer: str) -> str:
    """`ipv4:127.0.0.1:5555` -> `127.0.0.1`."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer
