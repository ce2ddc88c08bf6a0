"""Wrapping a gRPC method handler of any of the four kinds in one async context manager.

Server interceptors (authentication, error mapping) need to run code around every call of every
method, whatever its cardinality; grpc.aio offers no single hook for that, so this is the one place
that knows the four handler shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import grpc
from grpc import aio

#: Code run around one call: entered before the servicer, exited (with its exception) after it.
Guard = Callable[[aio.ServicerContext], AbstractAsyncContextManager[None]]


def wrap_handler(handler: grpc.RpcMethodHandler, guard: Guard) -> grpc.RpcMethodHandler:
    """`handler` with every call run inside `guard(context)`."""
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: aio.ServicerContext) -> Any:
            async with guard(context):
                return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: aio.ServicerContext) -> Any:
            async with guard(context):
                async for item in inner_us(request, context):
                    yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: aio.ServicerContext) -> Any:
            async with guard(context):
                return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: aio.ServicerContext) -> Any:
        async with guard(context):
            async for item in inner_ss(requests, context):
                yield item

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )


class MethodGuard(Protocol):
    """Code to run around calls of some methods (authentication, error mapping)."""

    def applies(self, method: str) -> bool:
        """Whether calls of `method` (e.g. "/buildit.v1.AgentService/Lease") are guarded."""
        ...

    def guard_for(self, method: str) -> Guard:
        """The code run around each call of `method` (built once per method)."""
        ...


class GuardingInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """One server interceptor running every guard that applies to a method around its calls.

    One interceptor, not one per guard: each wrapper adds a layer that every message of a stream
    passes through, and the agents' log and lease streams carry a message per chunk and event.
    Guards run outermost first (the first guard sees what the second raises).
    """

    def __init__(self, guards: Sequence[MethodGuard]) -> None:
        self.guards = tuple(guards)
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
        guards: list[Guard] = [g.guard_for(method) for g in self.guards if g.applies(method)]
        if handler is None or not guards:
            return handler
        wrapped = self._wrapped[method] = wrap_handler(handler, _nested(guards))
        return wrapped


def _nested(guards: Sequence[Guard]) -> Guard:
    """One guard that runs `guards` nested, the first outermost."""
    if len(guards) == 1:
        return guards[0]
    outer, inner = guards[0], _nested(guards[1:])

    @contextlib.asynccontextmanager
    async def both(context: aio.ServicerContext) -> AsyncIterator[None]:
        async with outer(context), inner(context):
            yield

    return both
