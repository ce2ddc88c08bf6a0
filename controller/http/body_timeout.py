"""A request body must arrive within a deadline: a client that stops sending is answered 408.

Why: uvicorn hands a request to the app as soon as its headers arrive and then waits for the body
as long as the client keeps the connection open. A client (or many) sending a Content-Length and
then nothing, or one byte a minute, would hold a handler and its memory forever. The deadline
counts from the app's first read of the body and covers all of it, so a slow drip cannot extend it.
"""

from __future__ import annotations

import asyncio

from litestar.exceptions import ClientException
from litestar.types import Receive, ReceiveMessage

__all__ = ["BodyDeadline"]


class BodyDeadline:
    """An ASGI `receive` that gives up on the body after `timeout_s` seconds with a 408.

    After the last body message (or a disconnect) it passes every call through unchanged: a
    handler that later waits for the client to go away is not cut short.
    """

    def __init__(self, receive: Receive, timeout_s: float) -> None:
        self._receive = receive
        self._timeout_s = timeout_s
        self._deadline: float | None = None
        self._done = False

    async def __call__(self) -> ReceiveMessage:
        """The next message of the request, or ClientException(408) when the deadline passed."""
        if self._done:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout_s
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self._done = True
            raise ClientException(
                status_code=408,
                detail=f"the request body did not arrive within {self._timeout_s:g} s; send it in full "
                "right after the headers",
                headers={"Connection": "close"},
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message
