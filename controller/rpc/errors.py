"""The error tree on gRPC: every BuildItError a servicer raises becomes its status code, one table.

Servicers of both services raise `controller.errors` kinds (or let the operations they call raise
them) and never choose a status code themselves; this guard (run by the server's
`GuardingInterceptor`) answers with the code of
`controller.errors.GRPC_CODE` and the error's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
from grpc import aio

from controller.errors import GRPC_CODE, BuildItError
from controller.rpc.wrapping import Guard


def grpc_code(exc: BuildItError) -> grpc.StatusCode:
    """The gRPC status code of an error kind."""
    return grpc.StatusCode[GRPC_CODE[exc.kind]]


async def abort(context: aio.ServicerContext, exc: BuildItError) -> NoReturn:
    """End the call with the status of `exc` (for code that must answer before returning)."""
    await context.abort(grpc_code(exc), exc.message)
    raise AssertionError("unreachable")  # context.abort raises


class ErrorMapping:
    """Maps BuildItError to its gRPC status on every method of both BuildIt services."""

    def applies(self, method: str) -> bool:
        """Every BuildIt method (not health or reflection, which raise none)."""
        return method.startswith("/buildit.")

    def guard_for(self, method: str) -> Guard:
        """The same guard for every method."""
        return self.guard

    @contextlib.asynccontextmanager
    async def guard(self, context: aio.ServicerContext) -> AsyncIterator[None]:
        """Turn an escaping BuildItError into the call's status."""
        try:
            yield
        except BuildItError as exc:
            await abort(context, exc)
