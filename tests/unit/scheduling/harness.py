"""A scheduler on the in-memory store, a clock moved by hand, and agents driven through its API.

The agents here make the calls the gRPC servicer makes (open_stream, stage_started, ...); the
wire is covered by tests/integration/fleet and the database by tests/integration/scheduling.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.contract.types import CancelStage, StageLease, StageStatus
from controller.events import EventBus
from controller.scheduling.fleet import AgentConn, AgentEvent
from controller.scheduling.logs import LogStore
from controller.scheduling.memory_store import MemorySecrets, MemoryStore
from controller.scheduling.scheduler import Scheduler

TTL_S = 30.0
#: How long a test waits for an event it expects before failing (a hang guard, not a timing).
EVENT_WAIT_S = 10.0


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.at += timedelta(seconds=seconds)


class Harness:
    """The scheduler under test and its agents' lease streams."""

    def __init__(self, tmp_path: Path, infra_retries: int = 2) -> None:
        self.store = MemoryStore()
        #: The secrets leases are filled from (set them in a test, as `buildit secret set` would).
        self.secrets = MemorySecrets()
        self.clock = Clock()
        self.events = EventBus()
        self.scheduler = Scheduler(
            self.store,
            LogStore(tmp_path / "logs"),
            self.events,
            lease_ttl_s=TTL_S,
            infra_retries=infra_retries,
            clock=self.clock,
            secrets=self.secrets,
        )
        self.streams: dict[uuid.UUID, tuple[asyncio.Queue[AgentEvent], asyncio.Task[None]]] = {}

    async def start(self) -> Harness:
        """Start the scheduler (its timer sleeps on the real clock: tests call check_deadlines)."""
        await self.scheduler.start()
        return self

    async def close(self) -> None:
        """Close every stream and stop the scheduler."""
        for agent_id in list(self.streams):
            await self.disconnect(agent_id)
        await self.scheduler.stop()

    async def agent(self, name: str, capacity: int = 1, labels: dict[str, str] | None = None) -> uuid.UUID:
        """Register an agent and open its lease stream."""
        conn = AgentConn(uuid.uuid4(), name, labels or {}, ("local",), capacity, "0.1.0")
        self.store.add_agent(conn)
        await self.scheduler.agent_registered(conn)
        await self.connect(conn.id)
        return conn.id

    async def connect(self, agent_id: uuid.UUID, running: list[str] | None = None) -> None:
        """Open the agent's lease stream; returns once the scheduler has it."""
        queue: asyncio.Queue[AgentEvent] = asyncio.Queue()

        async def pump() -> None:
            async for event in self.scheduler.open_stream(agent_id, running or [], idle_s=3600):
                if event is not None:
                    queue.put_nowait(event)

        task = asyncio.create_task(pump())
        self.streams[agent_id] = (queue, task)
        agent = self.scheduler.agents[agent_id]
        while agent.events is None and not task.done():
            await asyncio.sleep(0)

    async def disconnect(self, agent_id: uuid.UUID) -> None:
        """Close the agent's lease stream (the agent went away)."""
        _, task = self.streams.pop(agent_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def next_event(self, agent_id: uuid.UUID) -> AgentEvent:
        """The next event on the agent's stream."""
        queue, _ = self.streams[agent_id]
        return await asyncio.wait_for(queue.get(), EVENT_WAIT_S)

    async def lease(self, agent_id: uuid.UUID) -> StageLease:
        """The next event, which must be a lease."""
        event = await self.next_event(agent_id)
        assert isinstance(event, StageLease), event
        return event

    async def cancel(self, agent_id: uuid.UUID) -> CancelStage:
        """The next event, which must be a cancel."""
        event = await self.next_event(agent_id)
        assert isinstance(event, CancelStage), event
        return event

    def pending_events(self, agent_id: uuid.UUID) -> int:
        """Events delivered to the agent's stream and not read by the test yet."""
        return self.streams[agent_id][0].qsize()

    async def run_stage(
        self,
        agent_id: uuid.UUID,
        lease: StageLease,
        status: StageStatus = StageStatus.SUCCEEDED,
        exit_code: int | None = 0,
    ) -> None:
        """Report the stage running, then ended with `status`."""
        await self.scheduler.stage_started(agent_id, lease.lease_id, None)
        await self.scheduler.stage_finished(agent_id, lease.lease_id, status, exit_code, "")

    def statuses(self, run_id: uuid.UUID) -> dict[str, StageStatus]:
        """Stored status of every stage of a run."""
        return {name: s.status for name, s in self.store.stored_run(run_id).stages.items()}
