"""A test-side client of `/ws`: the `websockets` library against a real `buildit controller`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.integration.fleet.harness import Controller

TIMEOUT_S = 60.0


def connect(controller: Controller, key: str | None = None, **kw: Any) -> Any:
    """`async with connect(c) as ws:` a WebSocket to the controller's /ws, signed in with an API key
    (the admin's unless `key` is given; "" for none)."""
    credential = controller.api_key if key is None else key
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return websockets.connect(
        f"ws://127.0.0.1:{controller.http_port}/ws", max_size=None, additional_headers=headers, **kw
    )


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def receive_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT_S
) -> list[dict[str, Any]]:
    """Every message up to and including the first one `done` accepts."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            seen.append(message)
            if done(message):
                return seen


def log_request(tag: str, run_id: str, stage: str, offset: int = 0, attempt: int = 1) -> dict[str, Any]:
    return {"op": "log", "id": tag, "run_id": run_id, "stage": stage, "attempt": attempt, "offset": offset}


def check_log_messages(messages: list[dict[str, Any]], tag: str, start: int) -> tuple[str, int]:
    """The text of a log stream's messages and its final `next`, checking offsets chain exactly."""
    position = start
    parts: list[str] = []
    for message in messages:
        if message.get("id") != tag or message["type"] not in ("log", "log_end"):
            continue
        if message["type"] == "log_end":
            assert message["next"] == position, message
            continue
        assert message["offset"] == position, (message["offset"], position)
        assert message["next"] - message["offset"] == len(message["data"].encode("utf-8")), message["next"]
        parts.append(message["data"])
        position = message["next"]
    return "".join(parts), position
