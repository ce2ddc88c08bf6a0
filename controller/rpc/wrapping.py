"""Wrapping a gRPC method handler of any of the four kinds in one async context manager.

Server interceptors (authentication, error mapping) need to run code around every call of every
method, whatever its cardinality; grpc.aio offers no single hook for that, so this is the one place
that knows the four handler shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

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


class GuardingInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that runs `guard` around every call of the methods `applies` to."""

    def __init__(self) -> None:
        # Wrapped handlers by method: wrapping builds closures and a handler object, the same
        # for every call of a method, so it is done once per method, not once per call.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def applies(self, method: str) -> bool:
        """Whether calls of `method` (e.g. "/buildit.v1.AgentService/Lease") are guarded."""
        raise NotImplementedError

    def guard(self, context: aio.ServicerContext) -> AbstractAsyncContextManager[None]:
        """The code run around one call."""
        raise NotImplementedError

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
        if handler is None or not self.applies(method):
            return handler
        wrapped = self._wrapped[method] = wrap_handler(handler, self.guard)
        return wrapped
