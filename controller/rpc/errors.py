"""The error tree on gRPC: every BuildItError a servicer raises becomes its status code, one table.

Servicers of both services raise `controller.errors` kinds (or let the operations they call raise
them) and never choose a status code themselves; this interceptor answers with the code of
`controller.errors.GRPC_CODE` and the error's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from grpc import aio

from controller.errors import GRPC_CODE, BuildItError
from controller.rpc.wrapping import wrap_handler


def grpc_code(exc: BuildItError) -> grpc.StatusCode:
    """The gRPC status code of an error kind."""
    return grpc.StatusCode[GRPC_CODE[exc.kind]]


async def abort(context: aio.ServicerContext, exc: BuildItError) -> NoReturn:
    """End the call with the status of `exc` (for code that must answer before returning)."""
    await context.abort(grpc_code(exc), exc.message)
    raise AssertionError("unreachable")  # context.abort raises


@contextlib.asynccontextmanager
async def _mapped(context: aio.ServicerContext) -> AsyncIterator[None]:
    try:
        yield
    except BuildItError as exc:
        await abort(context, exc)


class ErrorInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Maps BuildItError to its gRPC status on every method of every service."""

    def __init__(self) -> None:
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
        if handler is None or not method.startswith("/buildit."):
            return handler
        wrapped = self._wrapped[method] = wrap_handler(handler, _mapped)
        return wrapped
