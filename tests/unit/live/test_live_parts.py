"""The live socket's pure parts: UTF-8 cutting, the bounded outbox, request parsing, the bus limit."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from uuid import uuid4

import pytest

from controller.events import EventBus, Overflow
from controller.live.logfollow import complete_utf8
from controller.live.outbox import Outbox
from controller.live.requests import BadRequest, FollowLog, StopLog, Watch, parse


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_complete_utf8_never_ends_inside_a_character(char: str) -> None:
    data = ("x" + char * 3).encode()
    whole = len(data)
    for end in range(whole + 1):
        cut = complete_utf8(data[:end])
        data[:cut].decode("utf-8")  # never raises: a whole number of characters
        assert end - cut < len(char.encode())  # only an incomplete character is held back


def test_complete_utf8_passes_invalid_bytes_on() -> None:
    assert complete_utf8(b"ab\x80\x80\x80\x80") == 6  # stray continuation bytes: nothing to wait for
    assert complete_utf8(b"ab\xff") == 3  # not a lead byte of any length


async def test_outbox_overflow_drops_the_topic_and_queues_one_reload() -> None:
    box = Outbox(max_messages=3, max_bytes=1000)
    assert box.put("a", "a1", "RA")
    assert box.put("b", "b1", "RB")
    assert box.put("a", "a2", "RA")
    assert not box.put("a", "a3", "RA")  # full: a's pending updates go, one reload instead
    assert not box.put("a", "a4", "RA")  # dropped until the reload is written
    assert [await box.get(), await box.get()] == ["b1", "RA"]
    assert box.put("a", "a5", "RA")  # after the reload went out, updates flow again
    assert await box.get() == "a5"
    assert box.reloads_sent == 1


async def test_outbox_byte_bound_and_waiting_for_room() -> None:
    box = Outbox(max_messages=100, max_bytes=10)
    box.put_control("x" * 8)
    assert not box.has_room()
    waiter = asyncio.create_task(box.wait_room())
    await asyncio.sleep(0)
    assert not waiter.done()
    assert await box.get() == "x" * 8
    await asyncio.wait_for(waiter, 1)
    assert not box.put("t", "y" * 11, "R")  # larger than the bound: reload
    assert await box.get() == "R"


def test_a_deeply_nested_message_is_a_bad_request_not_a_crash() -> None:
    with pytest.raises(BadRequest, match="the message is refused: the JSON nests 50000 levels deep"):
        parse("[" * 50_000 + "]" * 50_000)


def test_requests_parse_into_their_kinds() -> None:
    run = uuid4()
    assert parse('{"op":"watch","topic":"runs"}') == Watch("runs", None, False)
    assert parse(json.dumps({"op": "unwatch", "topic": "run", "run_id": str(run)})) == Watch("run", run, True)
    message = {"op": "log", "id": "t", "run_id": str(run), "stage": "s", "attempt": 2, "offset": 9}
    assert parse(json.dumps(message)) == FollowLog("t", run, "s", 2, 9)
    assert parse('{"op":"unlog","id":"t"}') == StopLog("t")
    with pytest.raises(BadRequest, match='"attempt" must be an integer >= 1, got true'):
        parse(json.dumps({**message, "attempt": True}))
    with pytest.raises(BadRequest, match='"stage" must be a stage name'):
        parse(json.dumps({**message, "stage": ""}))


async def test_a_small_subscription_limit_overflows_once_and_keeps_offsets() -> None:
    bus = EventBus()
    stage = SimpleNamespace(run_id=uuid4(), name="s", attempt=1, log_size=0)
    async with bus.subscribe(stage.run_id, frozenset({"log"}), limit=3) as queue:
        for chunk in (b"ab", b"cd", b"ef", b"gh"):
            stage.log_size += len(chunk)
            bus.publish_log(stage, chunk)
        items = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(e.offset, e.data) for e in items[:2]] == [(0, b"ab"), (2, b"cd")]  # type: ignore[union-attr]
    assert isinstance(items[2], Overflow) and len(items) == 3
    with pytest.raises(ValueError, match="at least 2"):
        async with bus.subscribe(limit=1):
            pass
