"""controller.http.body_timeout: a body must arrive in full within the deadline, then reads pass."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar.exceptions import ClientException

from controller.http.body_timeout import BodyDeadline


class Client:
    """The server side of one request: messages the client has sent so far, as `receive` gives them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self) -> Any:
        return await self.queue.get()

    def send(self, body: bytes, more: bool) -> None:
        self.queue.put_nowait({"type": "http.request", "body": body, "more_body": more})


async def test_a_body_that_stops_coming_is_a_408_after_the_deadline() -> None:
    client = Client()
    client.send(b'{"config":', more=True)
    receive = BodyDeadline(client.receive, 0.2)
    assert (await receive())["body"] == b'{"config":'
    started = time.monotonic()
    with pytest.raises(ClientException) as caught:
        await receive()
    assert 0.1 <= time.monotonic() - started < 1
    assert caught.value.status_code == 408
    assert "did not arrive within 0.2 s" in caught.value.detail
    assert caught.value.headers == {"Connection": "close"}


async def test_the_deadline_covers_the_whole_body_not_each_read() -> None:
    client = Client()
    receive = BodyDeadline(client.receive, 0.3)

    async def drip() -> None:
        for _ in range(10):
            client.send(b"x", more=True)
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(drip())
    with pytest.raises(ClientException):
        while True:
            await receive()
    dripping.cancel()


async def test_after_the_body_reads_wait_as_long_as_they_need() -> None:
    client = Client()
    client.send(b"{}", more=False)
    receive = BodyDeadline(client.receive, 0.1)
    assert (await receive())["body"] == b"{}"
    later = asyncio.create_task(receive())  # e.g. a handler waiting for the client to disconnect
    await asyncio.sleep(0.3)
    assert not later.done()
    client.queue.put_nowait({"type": "http.disconnect"})
    assert (await later)["type"] == "http.disconnect"
