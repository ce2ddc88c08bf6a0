"""Agent authentication for AgentService: `authorization: Bearer <agent token>` on every call.

Implemented as a server interceptor that wraps each handler, so servicers receive the
authenticated agent id and never look at tokens themselves. Register is the one open method:
it is authenticated by the registration token in its request.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import grpc
from grpc import aio

from controller.errors import Unauthenticated
from controller.rpc.wrapping import wrap_handler

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


class AgentAuthInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Rejects AgentService calls without a valid agent token (UNAUTHENTICATED)."""

    def __init__(self, authenticate: Authenticate) -> None:
        self.authenticate = authenticate
        # Wrapped handlers by method: wrapping builds closures and a handler object, the same
        # for every call of a method, so it is done once per method, not once per call.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(AGENT_PREFIX) or method in OPEN_METHODS:
            return handler
        wrapped = self._wrapped[method] = _wrap(handler, self.authenticate)
        return wrapped


def _wrap(handler: grpc.RpcMethodHandler, authenticate: Authenticate) -> grpc.RpcMethodHandler:
    @contextlib.asynccontextmanager
    async def check(context: aio.ServicerContext) -> AsyncIterator[None]:
        token = bearer_token(context.invocation_metadata())
        agent_id = await authenticate(token) if token else None
        if agent_id is None:
            raise Unauthenticated(
                "missing or unknown agent token: register the agent again with the registration token"
            )
        current_agent.set(agent_id)
        yield

    return wrap_handler(handler, check)
