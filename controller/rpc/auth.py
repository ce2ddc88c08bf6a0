"""Agent authentication for AgentService: `authorization: Bearer <agent token>` on every call.

Implemented as a server interceptor that wraps each handler, so servicers receive the
authenticated agent id and never look at tokens themselves. Register is the one open method:
it is authenticated by the registration token in its request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import grpc
from grpc import aio

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
    async def check(context: aio.ServicerContext) -> UUID:
        token = bearer_token(context.invocation_metadata())
        agent_id = await authenticate(token) if token else None
        if agent_id is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown agent token: register the agent again with the registration token",
            )
            raise AssertionError("unreachable")
        current_agent.set(agent_id)
        return agent_id

    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: aio.ServicerContext) -> Any:
            await check(context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: aio.ServicerContext) -> Any:
            await check(context)
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: aio.ServicerContext) -> Any:
            await check(context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: aio.ServicerContext) -> Any:
        await check(context)
        async for item in inner_ss(requests, context):
            yield item

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )
