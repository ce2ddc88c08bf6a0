"""The scheduler in-process on a real database (SQLite and PostgreSQL): the state machine itself.

Agents here are the scheduler's own API (open_stream / heartbeat / stage_* calls), the same calls
the gRPC servicer makes; the process-level tests in tests/integration/fleet cover the wire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.contract.types import CancelStage, StageLease, StageStatus
from controller.agents.tables import Agent
from controller.events import EventBus
from controller.orgs.services import ensure_default_org_and_tenant
from controller.pipelines.services import create_pipeline
from controller.runs.tables import Run, StageRun
from controller.scheduling.db_store import PiccoloStore
from controller.scheduling.fleet import AgentConn
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler

PIPELINE = """
pipeline "p"
stage "a" { run "echo a"; }
stage "b" needs="a" { retries 1; run "echo b"; }
stage "c" needs="a" { labels "gpu=true"; run "echo c"; }
"""


class Harness:
    """A scheduler on the test database plus helpers to act as agents."""

    def __init__(self, tmp_path: Path, ttl: float = 30.0) -> None:
        self.tmp_path = tmp_path
        self.ttl = ttl
        self.streams: dict[uuid.UUID, tuple[asyncio.Queue[Any], asyncio.Task[None]]] = {}

    async def start(self) -> Scheduler:
        self.org, self.tenant = await ensure_default_org_and_tenant()
        self.scheduler = Scheduler(
            PiccoloStore(self.org, self.tenant),
            LogStore(self.tmp_path / "logs"),
            EventBus(),
            lease_ttl_s=self.ttl,
        )
        await self.scheduler.start()
        return self.scheduler

    async def agent(self, name: str, labels: dict[str, str] | None = None, capacity: int = 1) -> uuid.UUID:
        agent_id = uuid.uuid4()
        await Agent.insert(
            Agent(
                id=agent_id,
                org=self.org,
                tenant=self.tenant,
                name=name,
                token_hash=uuid.uuid4().hex,
                labels=labels or {},
                executors=["local"],
                capacity=capacity,
                version="0.1.0",
                registered_at=datetime.now(UTC),
            )
        )
        await self.scheduler.agent_registered(
            AgentConn(agent_id, name, labels or {}, ("local",), capacity, "0.1.0")
        )
        await self.connect(agent_id)
        return agent_id

    async def connect(self, agent_id: uuid.UUID, running: list[str] | None = None) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            async for event in self.scheduler.open_stream(agent_id, running or [], idle_s=60):
                if event is not None:
                    queue.put_nowait(event)

        task = asyncio.create_task(pump())
        self.streams[agent_id] = (queue, task)
        await asyncio.sleep(0.05)

    async def disconnect(self, agent_id: uuid.UUID) -> None:
        _, task = self.streams.pop(agent_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def next_event(self, agent_id: uuid.UUID, timeout: float = 5.0) -> Any:
        queue, _ = self.streams[agent_id]
        return await asyncio.wait_for(queue.get(), timeout)

    async def run_stage(
        self,
        agent_id: uuid.UUID,
        offer: StageLease,
        lines: bytes = b"",
        status=StageStatus.SUCCEEDED,
        exit_code: int | None = 0,
    ) -> None:
        await self.scheduler.stage_started(agent_id, offer.lease_id, None)
        if lines:
            await self.scheduler.append_logs(agent_id, offer.lease_id, 1, lines)
        await self.scheduler.stage_finished(agent_id, offer.lease_id, status, exit_code, "")


@pytest.fixture
async def harness(db: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    await h.start()
    yield h
    for agent_id in list(h.streams):
        await h.disconnect(agent_id)
    await h.scheduler.stop()


async def statuses(run_id: uuid.UUID) -> dict[str, str]:
    rows = await StageRun.select(StageRun.name, StageRun.status).where(StageRun.run == run_id)
    return {r["name"]: r["status"] for r in rows}


async def test_dag_labels_and_retries(harness: Harness) -> None:
    pipeline = await create_pipeline(harness.org, harness.tenant, PIPELINE, None)
    plain = await harness.agent("plain")
    run = await harness.scheduler.trigger(pipeline["id"])
    assert run.number == 1
    offer = await harness.next_event(plain)
    assert isinstance(offer, StageLease) and offer.spec.name == "a" and offer.attempt == 1
    await harness.run_stage(plain, offer, b"$ echo a\na\n")
    # b is ready for the plain agent; c needs a gpu agent that does not exist yet.
    offer_b = await harness.next_event(plain)
    assert offer_b.spec.name == "b"
    assert (await statuses(run.id))["c"] == "queued"
    # A non-zero exit is retried because b has `retries 1`.
    await harness.run_stage(plain, offer_b, status=StageStatus.FAILED, exit_code=1)
    retry = await harness.next_event(plain)
    assert retry.spec.name == "b" and retry.attempt == 2 and retry.lease_id != offer_b.lease_id
    await harness.run_stage(plain, retry)
    gpu = await harness.agent("gpu", labels={"gpu": "true"})
    offer_c = await harness.next_event(gpu)
    assert offer_c.spec.name == "c"
    await harness.run_stage(gpu, offer_c)
    row = await Run.select().where(Run.id == run.id).first()
    assert row["status"] == "succeeded"
    assert await statuses(run.id) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    log = harness.scheduler.logs.path(run.id, "a", 1).read_bytes()
    assert log == b"$ echo a\na\n"


async def test_log_chunks_are_stored_exactly_once(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org, harness.tenant, 'pipeline "l"\nstage "s" { run "x"; }\n', None
    )
    agent = await harness.agent("logger")
    run = await harness.scheduler.trigger(pipeline["id"])
    offer = await harness.next_event(agent)
    await harness.scheduler.stage_started(agent, offer.lease_id, None)
    append = harness.scheduler.append_logs
    assert await append(agent, offer.lease_id, 1, b"one\n") == (1, False)
    assert await append(agent, offer.lease_id, 1, b"one\n") == (1, False)  # duplicate: acked, not stored
    assert await append(agent, offer.lease_id, 3, b"three\n") == (1, False)  # gap: not stored
    assert await append(agent, offer.lease_id, 2, b"two\n") == (2, False)
    assert await append(agent, "not-a-lease", 1, b"x\n") == (0, True)
    assert harness.scheduler.logs.path(run.id, "s", 1).read_bytes() == b"one\ntwo\n"
    row = await StageRun.select().where(StageRun.run == run.id).first()
    assert (row["log_seq"], row["log_size"]) == (2, 8)


async def test_lease_expiry_requeues_then_gives_up_and_fences_the_zombie(db: Any, tmp_path: Path) -> None:
    harness = Harness(tmp_path, ttl=0.3)
    await harness.start()
    try:
        pipeline = await create_pipeline(
            harness.org, harness.tenant, 'pipeline "e"\nstage "s" { run "x"; }\n', None
        )
        agent = await harness.agent("flaky", capacity=1)
        run = await harness.scheduler.trigger(pipeline["id"])
        offers = []
        for attempt in (1, 2, 3):
            offer = await harness.next_event(agent)
            assert isinstance(offer, StageLease) and offer.attempt == attempt
            offers.append(offer)
            # Never heartbeat: the lease expires; the agent is told its lease is lost.
            lost = await harness.next_event(agent, timeout=5)
            assert (
                isinstance(lost, CancelStage)
                and lost.lease_id == offer.lease_id
                and lost.reason == "lease_lost"
            )
        await asyncio.sleep(0.2)
        row = await StageRun.select().where(StageRun.run == run.id).first()
        assert row["status"] == "error" and row["infra_failures"] == 3
        assert "giving up" in row["message"]
        # Zombie writes with any old lease are refused and change nothing.
        from controller.errors import BuildItError

        with pytest.raises(BuildItError) as refused:
            await harness.scheduler.stage_finished(agent, offers[0].lease_id, StageStatus.SUCCEEDED, 0, "")
        assert refused.value.kind == "lease_lost"
        assert await harness.scheduler.heartbeat(agent, [offers[1].lease_id], 1, False) == [
            offers[1].lease_id
        ]
        assert (await StageRun.select().where(StageRun.run == run.id).first())["status"] == "error"
    finally:
        for agent_id in list(harness.streams):
            await harness.disconnect(agent_id)
        await harness.scheduler.stop()


async def test_restart_keeps_reclaimed_leases_and_requeues_unclaimed(db: Any, tmp_path: Path) -> None:
    first = Harness(tmp_path, ttl=0.5)
    await first.start()
    source = 'pipeline "r"\nstage "x" { run "x"; }\nstage "y" { run "y"; }\n'
    pipeline = await create_pipeline(first.org, first.tenant, source, None)
    keeper = await first.agent("keeper")
    loser = await first.agent("loser")
    run = await first.scheduler.trigger(pipeline["id"])
    offers = {}
    for agent_id in (keeper, loser):
        offer = await first.next_event(agent_id)
        await first.scheduler.stage_started(agent_id, offer.lease_id, None)
        offers[agent_id] = offer
    for agent_id in (keeper, loser):
        await first.disconnect(agent_id)
    await first.scheduler.stop()

    # "Restart": a new scheduler on the same database. Only the keeper comes back.
    second = Harness(tmp_path, ttl=0.5)
    await second.start()
    try:
        await second.connect(keeper, running=[offers[keeper].lease_id])
        deadline = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < deadline:
            await second.scheduler.heartbeat(keeper, [offers[keeper].lease_id], 0, False)
            state = await statuses(run.id)
            if state[offers[loser].spec.name] == "queued":
                break
            await asyncio.sleep(0.1)
        state = await statuses(run.id)
        assert state[offers[keeper].spec.name] == "running"
        assert state[offers[loser].spec.name] == "queued"
        await second.scheduler.stage_finished(keeper, offers[keeper].lease_id, StageStatus.SUCCEEDED, 0, "")
        assert (await statuses(run.id))[offers[keeper].spec.name] == "succeeded"
    finally:
        for agent_id in list(second.streams):
            await second.disconnect(agent_id)
        await second.scheduler.stop()


async def test_cancel_tells_running_agents_and_ends_the_rest(harness: Harness) -> None:
    source = 'pipeline "c"\nstage "long" { run "sleep 60"; }\nstage "after" needs="long" { run "x"; }\n'
    pipeline = await create_pipeline(harness.org, harness.tenant, source, None)
    agent = await harness.agent("runner")
    run = await harness.scheduler.trigger(pipeline["id"])
    offer = await harness.next_event(agent)
    await harness.scheduler.stage_started(agent, offer.lease_id, None)
    await harness.scheduler.cancel_run(run.id)
    order = await harness.next_event(agent, timeout=1)
    assert isinstance(order, CancelStage) and order.lease_id == offer.lease_id and order.reason == "user"
    assert (await statuses(run.id))["after"] == "cancelled"
    await harness.scheduler.stage_finished(agent, offer.lease_id, StageStatus.CANCELLED, None, "cancelled")
    row = await Run.select().where(Run.id == run.id).first()
    assert row["status"] == "cancelled" and row["cancel_requested"] is True


async def test_invalid_pipeline_source_gives_an_error_run(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org, harness.tenant, 'pipeline "v"\nstage "s" { run "x"; }\n', None
    )
    from controller.pipelines.tables import Pipeline

    # A stored source that no longer plans (a secret is required but none is configured).
    await Pipeline.update(
        {Pipeline.config: 'pipeline "v"\nstage "s" { run "echo ${secrets.NOPE}"; }\n'}
    ).where(Pipeline.id == pipeline["id"])
    run = await harness.scheduler.trigger(pipeline["id"])
    row = await Run.select().where(Run.id == run.id).first()
    assert row["status"] == "error"
    assert "secret 'NOPE'" in row["error"]
