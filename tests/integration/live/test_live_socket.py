"""`/ws` against a real `buildit controller` and a real local-executor agent, with a real client.

Covers the contract the UI pages rely on: run and stage updates, a log followed from any offset
equal to the stored log byte for byte (also across a reconnect), UTF-8 never split, a client that
does not read getting `reload` while the controller keeps serving others, and clear errors for bad
messages on a socket that stays open.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contract import logmarks
from controller.live.logfollow import LAG_BYTES, MESSAGE_BYTES
from controller.live.outbox import MAX_MESSAGES
from tests.integration.fleet.harness import Agent, Controller, wait_for
from tests.integration.live.client import (
    check_log_messages,
    connect,
    log_request,
    receive,
    receive_until,
    send,
)

pytestmark = pytest.mark.timeout(180)

FINISHED = {"succeeded", "failed", "cancelled", "error", "timed_out", "skipped"}


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    controller = Controller(tmp_path, database_url).start()
    agent = Agent(tmp_path, controller, "live")
    try:
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 60, "the agent online")
        yield controller
    finally:
        agent.stop()
        controller.stop()


@pytest.fixture(scope="module")
def sqlite_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    """One controller and agent for the SQLite-only tests (each test uses runs of its own)."""
    tmp_path = tmp_path_factory.mktemp("live")
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}").start()
    agent = Agent(tmp_path, controller, "live")
    try:
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 60, "the agent online")
        yield controller
    finally:
        agent.stop()
        controller.stop()


def start_run(controller: Controller, config: str) -> tuple[str, int, str]:
    """(pipeline id, run number, run id) of a freshly triggered run."""
    pipeline = controller.create_pipeline(config)
    number = controller.trigger(pipeline)
    return pipeline, number, controller.run(pipeline, number)["id"]


def stored_log(controller: Controller, pipeline: str, number: int, stage: str) -> bytes:
    status, body, _ = controller.request(
        "GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/stages/{stage}/log"
    )
    assert status == 200, body
    text = body if isinstance(body, str) else json.dumps(body)
    return text.encode("utf-8")


async def test_run_and_stage_updates_and_a_log_equal_to_the_stored_one(fleet: Controller) -> None:
    controller = fleet
    config = (
        'pipeline "live-demo"\n'
        'stage "build" { run "seq 1 20000; echo \'naïve ✓ 日本\'"; }\n'
        'stage "test" needs="build" { run "sleep 0.5; echo tested"; }\n'
    )
    async with connect(controller) as dashboard, connect(controller) as page:
        await send(dashboard, op="watch", topic="runs")
        await send(dashboard, op="ping")  # requests are handled in order: its error means "watching"
        assert (await receive(dashboard))["type"] == "error"
        pipeline, number, run_id = start_run(controller, config)
        await send(page, op="watch", topic="run", run_id=run_id)
        await send(page, **log_request("b", run_id, "build"))

        runs = await receive_until(dashboard, lambda m: m["type"] == "run" and m["run"]["status"] in FINISHED)
        assert all(m["type"] == "run" for m in runs)
        mine = [m["run"] for m in runs if m["run"]["id"] == run_id]
        assert mine[-1]["status"] == "succeeded"
        assert {r["pipeline_id"] for r in mine} == {pipeline}
        assert {r["pipeline_name"] for r in mine} == {"live-demo"}
        assert mine[-1]["number"] == number and mine[-1]["branch"] == "main"

        seen: list[dict[str, Any]] = []
        while not (
            any(m["type"] == "log_end" for m in seen)
            and any(m["type"] == "run" and m["run"]["status"] in FINISHED for m in seen)
        ):
            seen.append(await receive(page))
    stages = [m["stage"] for m in seen if m["type"] == "stage"]
    assert {s["run_id"] for s in stages} == {run_id}
    final = {s["name"]: s for s in stages}
    # A stage that starts while its run is already running is announced as running at once.
    assert [s["status"] for s in stages if s["name"] == "test"][-2:] == ["running", "succeeded"]
    assert final["build"]["status"] == "succeeded" and final["test"]["status"] == "succeeded"
    assert final["build"]["agent"] == "live" and final["build"]["attempt"] == 1
    (end,) = [m for m in seen if m["type"] == "log_end"]
    assert end == {"type": "log_end", "id": "b", "next": end["next"], "status": "succeeded"}
    text, position = check_log_messages(seen, "b", 0)
    stored = stored_log(controller, pipeline, number, "build")
    assert text.encode("utf-8") == stored and position == len(stored)
    # The commands' output, then BuildIt's closing line (agent.contract.logmarks).
    assert logmarks.plain(text).endswith("20000\nnaïve ✓ 日本\nbuildit: stage succeeded (1 command)\n")


async def test_reconnecting_with_the_last_next_resumes_without_gap_or_duplicate(
    sqlite_fleet: Controller,
) -> None:
    controller = sqlite_fleet
    config = 'pipeline "slow"\nstage "s" { run "for i in $(seq 1 60); do echo line $i; sleep 0.02; done"; }\n'
    pipeline, number, run_id = start_run(controller, config)
    first: list[dict[str, Any]] = []
    async with connect(controller) as ws:
        await send(ws, **log_request("t", run_id, "s"))
        while sum(m["type"] == "log" for m in first) < 3:  # three live messages, then drop the socket
            first.append(await receive(ws))
        assert not any(m["type"] == "log_end" for m in first)
    text1, resume = check_log_messages(first, "t", 0)
    assert resume > 0
    async with connect(controller) as ws:
        await send(ws, **log_request("t", run_id, "s", offset=resume))
        second = await receive_until(ws, lambda m: m["type"] == "log_end")
    text2, end = check_log_messages(second, "t", resume)
    assert second[-1]["status"] == "succeeded"
    stored = stored_log(controller, pipeline, number, "s")
    assert (text1 + text2).encode("utf-8") == stored and end == len(stored)
    assert stored.decode().count("\nline ") == 60


async def test_a_multibyte_character_is_never_split_between_messages(sqlite_fleet: Controller) -> None:
    controller = sqlite_fleet
    # 3-byte characters; the log is "$ <command>\n" then 1000-char lines: long enough for several
    # MESSAGE_BYTES messages, and byte MESSAGE_BYTES falls inside a character (checked below).
    command = "for i in $(seq 1 400); do printf '€%.0s' $(seq 1000); echo; done"
    config = f'pipeline "utf8"\nstage "s" {{ run "{command}"; }}\n'
    pipeline, number, run_id = start_run(controller, config)
    wait_for(lambda: controller.run(pipeline, number)["status"] in FINISHED, 120, "the run to finish")
    stored = stored_log(controller, pipeline, number, "s")
    assert len(stored) > 2 * MESSAGE_BYTES
    assert stored[MESSAGE_BYTES] & 0xC0 == 0x80  # a naive cut at MESSAGE_BYTES would split a character
    async with connect(controller) as ws:
        await send(ws, **log_request("u", run_id, "s"))
        messages = await receive_until(ws, lambda m: m["type"] == "log_end")
    logs = [m for m in messages if m["type"] == "log"]
    assert len(logs) >= 3
    for message in logs:
        assert "\ufffd" not in message["data"]
        if message["next"] < len(stored):  # every message ends on a character boundary
            assert stored[message["next"]] & 0xC0 != 0x80, message["next"]
    text, end = check_log_messages(messages, "u", 0)
    assert text.encode("utf-8") == stored and end == len(stored)


async def test_a_client_that_does_not_read_gets_reload_and_others_are_served(
    sqlite_fleet: Controller,
) -> None:
    controller = sqlite_fleet
    _, _, run_id = start_run(controller, 'pipeline "a"\nstage "s" { run "echo one"; }\n')
    async with connect(controller, max_queue=1) as stuck, connect(controller) as reader:
        await send(reader, op="watch", topic="runs")
        # Every watch answers with the run's state: far more than the outbox holds while nobody reads.
        requests = MAX_MESSAGES * 4
        for _ in range(requests):
            await send(stuck, op="watch", topic="run", run_id=run_id)
        await asyncio.sleep(1)
        # Meanwhile the controller serves everyone else as usual.
        pipeline, number, other = start_run(controller, 'pipeline "b"\nstage "s" { run "echo two"; }\n')
        updates = await receive_until(
            reader,
            lambda m: m["type"] == "run" and m["run"]["id"] == other and m["run"]["status"] in FINISHED,
        )
        assert updates[-1]["run"]["status"] == "succeeded"
        assert controller.run(pipeline, number)["status"] == "succeeded"
        # The stuck client, once it reads, finds that it missed updates and must reload.
        reloads: list[dict[str, Any]] = []
        received = 0
        while True:
            message = await receive(stuck, timeout=30)
            received += 1
            if message["type"] == "reload":
                reloads.append(message)
                break
        assert reloads == [{"type": "reload", "topic": "run", "run_id": run_id}]
        assert received < requests * 2  # some of the updates were dropped for the reload
        # and its socket still works
        await send(stuck, op="bogus")
        await receive_until(stuck, lambda m: m["type"] == "error")


BAD_MESSAGES = [
    ("not json", "not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"op": "dance"}', 'unknown "op" "dance"'),
    ('{"op": "watch", "topic": "weather"}', '"topic" must be one of runs, run, agents'),
    ('{"op": "watch", "topic": "run"}', '"run_id" must be a run id'),
    ('{"op": "watch", "topic": "run", "run_id": "RANDOM"}', "no run "),
    ('{"op": "log", "run_id": "RANDOM", "stage": "s", "attempt": 1}', '"id" must be a non-empty string'),
    ('{"op": "log", "id": "x", "run_id": "RANDOM", "stage": "s", "attempt": 0}', '"attempt" must be'),
    ('{"op": "log", "id": "x", "run_id": "RANDOM", "stage": "s", "attempt": 1, "offset": -1}', '"offset"'),
    ('{"op": "log", "id": "x", "run_id": "RANDOM", "stage": "s", "attempt": 1}', "no run "),
    ('{"op": "log", "id": "x", "run_id": "RUN", "stage": "nope", "attempt": 1}', "has no stage 'nope'"),
    ('{"op": "log", "id": "x", "run_id": "RUN", "stage": "s", "attempt": 7}', "has no attempt 7"),
    (
        '{"op": "log", "id": "x", "run_id": "RUN", "stage": "s", "attempt": 1, "offset": 999999}',
        "past the end",
    ),
    ('{"op": "unlog"}', '"id" must be a non-empty string'),
]


async def test_bad_messages_get_a_clear_error_and_the_socket_stays_open(sqlite_fleet: Controller) -> None:
    controller = sqlite_fleet
    pipeline, number, run_id = start_run(controller, 'pipeline "e"\nstage "s" { run "echo hi"; }\n')
    wait_for(lambda: controller.run(pipeline, number)["status"] in FINISHED, 60, "the run to finish")
    async with connect(controller) as ws:
        for message, fragment in BAD_MESSAGES:
            await ws.send(message.replace("RANDOM", str(uuid.uuid4())).replace("RUN", run_id))
            error = await receive(ws)
            assert error["type"] == "error" and fragment in error["message"], (message, error)
        await ws.send(b"binary")
        error = await receive(ws)
        assert error == {"type": "error", "message": "send JSON text frames, not binary ones"}
        # Still open and working: a valid request is served.
        await send(ws, **log_request("ok", run_id, "s"))
        messages = await receive_until(ws, lambda m: m["type"] == "log_end")
    text, _ = check_log_messages(messages, "ok", 0)
    assert logmarks.plain(text) == "$ echo hi\nhi\nbuildit: stage succeeded (1 command)\n"


async def test_the_fleet_page_sees_agents_as_the_api_shows_them_and_an_operator_drain_live(
    sqlite_fleet: Controller,
) -> None:
    controller = sqlite_fleet
    [agent] = controller.agents()
    async with connect(controller) as page:
        await send(page, op="watch", topic="agents")
        first = await receive(page)
        # The same agent in the same shape as GET /api/v1/agents (last_seen moves with heartbeats).
        assert first["type"] == "agent" and first["agent"].keys() == agent.keys()
        assert {**first["agent"], "last_seen": None} == {**agent, "last_seen": None}
        status, body, _ = controller.request("POST", f"/api/v1/agents/{agent['id']}/drain")
        assert status == 200, body
        try:
            drained = await receive_until(
                page, lambda m: m["type"] == "agent" and m["agent"]["status"] == "draining"
            )
            assert drained[-1]["agent"]["drain_requested_by"] == "operator"
        finally:
            status, body, _ = controller.request("POST", f"/api/v1/agents/{agent['id']}/resume")
            assert status == 200, body
        resumed = await receive_until(
            page, lambda m: m["type"] == "agent" and m["agent"]["status"] == "online"
        )
        assert resumed[-1]["agent"]["drain_requested_by"] is None


async def test_a_follower_that_falls_far_behind_a_fast_stage_is_told_to_reload_the_tail(
    sqlite_fleet: Controller,
) -> None:
    controller = sqlite_fleet
    total = 4 * LAG_BYTES  # printed at once, then the stage keeps running
    config = (
        'pipeline "firehose"\n'
        f'stage "s" {{ run "head -c {total * 3 // 4} /dev/urandom | base64 -w 99; sleep 60"; }}\n'
    )
    pipeline, number, run_id = start_run(controller, config)
    log_url = f"/api/v1/pipelines/{pipeline}/runs/{number}/stages/s/log"

    def stored() -> int:
        headers = controller.request("GET", log_url + f"?offset={total}")[2]
        return int({key.lower(): value for key, value in headers.items()}["x-log-size"])

    try:
        wait_for(lambda: controller.run(pipeline, number)["status"] == "running", 30, "the stage running")
        # A small receive buffer, as a slow browser far away has: the kernel must not absorb it all.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", controller.http_port))
        sock.setblocking(False)
        # No compression either: it would shrink the stream below any buffer.
        async with connect(controller, max_queue=1, sock=sock, compression=None) as slow:
            await send(slow, **log_request("f", run_id, "s"))
            # It reads one message (it is at the live edge), then nothing while the stage prints it all.
            assert (await receive(slow))["type"] == "log"
            wait_for(lambda: stored() >= total, 60, "the stage to print everything")
            received = 0
            while True:
                message = await receive(slow, timeout=30)
                assert message["type"] != "log_end", "the slow client was streamed the whole log"
                if message["type"] == "reload":
                    break
                received += len(message["data"])
            assert message == {"type": "reload", "topic": "log", "id": "f", "next": message["next"]}
            assert received < total - LAG_BYTES  # it was not sent megabytes it could not keep up with
            # Asking again from the end follows the live edge.
            await send(slow, **log_request("f", run_id, "s", offset=stored()))
    finally:
        controller.request("POST", f"/api/v1/pipelines/{pipeline}/runs/{number}/cancel")
