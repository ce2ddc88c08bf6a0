"""The error tree on each door: every kind gets its status from one table, the same class on REST
and gRPC, with its message intact. Real Litestar app (in-process ASGI client) and a real gRPC
server on loopback with the controller's interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from controller.api_errors import buildit_error_handler, internal_error_handler
from controller.errors import GRPC_CODE, HTTP_STATUS, KINDS, BuildItError
from controller.rpc.errors import ErrorMapping
from controller.rpc.wrapping import GuardingInterceptor

#: The status class each gRPC code stands for on HTTP (google.rpc's mapping, with 409 for every
#: "not in a state for this now" code and 422 allowed for unprocessable input).
SAME_CLASS = {
    "NOT_FOUND": {404},
    "INVALID_ARGUMENT": {400, 422},
    "FAILED_PRECONDITION": {409},
    "ALREADY_EXISTS": {409},
    "ABORTED": {409},
    "UNAUTHENTICATED": {401},
    "PERMISSION_DENIED": {403},
    "RESOURCE_EXHAUSTED": {413, 429},
    "UNAVAILABLE": {503},
    "INTERNAL": {500},
}
MESSAGE = "what went wrong, and how to fix it"


def test_every_kind_has_one_http_status_and_one_grpc_code_of_the_same_class() -> None:
    kinds = {kind.kind for kind in KINDS} | {BuildItError.kind}
    assert kinds == set(HTTP_STATUS) == set(GRPC_CODE)
    for kind in kinds:
        assert HTTP_STATUS[kind] in SAME_CLASS[GRPC_CODE[kind]], kind
        assert grpc.StatusCode[GRPC_CODE[kind]]  # a real code name


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
async def test_rest_answers_each_kind_with_its_status_and_message(kind: type[BuildItError]) -> None:
    @get("/fail")
    async def fail() -> None:
        raise kind(MESSAGE, hint="extra detail")

    app = Litestar(
        [fail], exception_handlers={BuildItError: buildit_error_handler, Exception: internal_error_handler}
    )
    async with AsyncTestClient(app) as client:
        response = await client.get("/fail")
    assert response.status_code == HTTP_STATUS[kind.kind]
    assert response.json() == {
        "status_code": HTTP_STATUS[kind.kind],
        "detail": MESSAGE,
        "extra": {"hint": "extra detail"},
    }


async def test_rest_hides_an_unexpected_error_behind_a_plain_500() -> None:
    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app = Litestar([boom], exception_handlers={Exception: internal_error_handler})
    async with AsyncTestClient(app) as client:
        response = await client.get("/boom")
    assert response.status_code == 500 and "secret" not in response.text


@pytest.fixture
async def failing_server() -> AsyncIterator[tuple[aio.Channel, dict[str, Any]]]:
    """A gRPC server whose methods raise the error put in `raise_next["error"]`."""
    raise_next: dict[str, Any] = {}

    async def unary(request: bytes, context: aio.ServicerContext) -> bytes:
        raise raise_next["error"]

    async def stream(request: bytes, context: aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        raise raise_next["error"]

    handler = grpc.method_handlers_generic_handler(
        "buildit.test.Failing",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = aio.server(interceptors=[GuardingInterceptor([ErrorMapping()])])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, raise_next
    finally:
        await channel.close()
        await server.stop(None)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
async def test_grpc_answers_each_kind_with_its_code_and_message(
    kind: type[BuildItError], failing_server: tuple[aio.Channel, dict[str, Any]]
) -> None:
    channel, raise_next = failing_server
    raise_next["error"] = kind(MESSAGE)
    unary = channel.unary_unary("/buildit.test.Failing/Unary")
    with pytest.raises(aio.AioRpcError) as refused:
        await unary(b"")
    assert refused.value.code() == grpc.StatusCode[GRPC_CODE[kind.kind]]
    assert refused.value.details() == MESSAGE
    # A server stream that fails after its first message ends with the same status.
    call = channel.unary_stream("/buildit.test.Failing/Stream")(b"")
    assert await call.read() == b"first"
    with pytest.raises(aio.AioRpcError) as ended:
        await call.read()
    assert ended.value.code() == grpc.StatusCode[GRPC_CODE[kind.kind]]
