"""Agent authentication for AgentService: `authorization: Bearer <agent token>` on every call.

A guard run around each call by the server's `GuardingInterceptor`, so servicers receive the
authenticated agent id and never look at tokens themselves. Register is the one open method:
it is authenticated by the registration token in its request.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

from grpc import aio

from controller.errors import Unauthenticated
from controller.rpc.wrapping import Guard

OPEN_METHODS = frozenset({"/buildit.v1.AgentService/Register"})
AGENT_PREFIX = "/buildit.v1.AgentService/"

current_agent: contextvars.ContextVar[UUID] = contextvars.ContextVar("current_agent")

Authenticate = Callable[[str], Awaitable[UUID | None]]


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer …` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


class AgentAuth:
    """Rejects AgentService calls without a valid agent token (Unauthenticated)."""

    def __init__(self, authenticate: Authenticate) -> None:
        self.authenticate = authenticate

    def applies(self, method: str) -> bool:
        """Every AgentService method but Register (authenticated by its registration token)."""
        return method.startswith(AGENT_PREFIX) and method not in OPEN_METHODS

    def guard_for(self, method: str) -> Guard:
        """The same guard for every method."""
        return self.guard

    @contextlib.asynccontextmanager
    async def guard(self, context: aio.ServicerContext) -> AsyncIterator[None]:
        """Authenticate the call's bearer token; the agent id is `current_agent` inside it."""
        token = bearer_token(context.invocation_metadata())
        agent_id = await self.authenticate(token) if token else None
        if agent_id is None:
            raise Unauthenticated(
                "missing or unknown agent token: register the agent again with the registration token"
            )
        current_agent.set(agent_id)
        yield
