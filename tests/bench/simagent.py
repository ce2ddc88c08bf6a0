"""Simulated agents: the AgentService protocol of a real agent, without running anything.

Why simulate: a real `buildit agent` cannot tell when a lease reached it, and a thousand real agent
processes do not fit on a 2-core machine. A `SimAgent` talks through `agent.client.ControllerClient`,
the real agent's own wire layer, and keeps the same connections a real agent keeps (see
`agent.runner`): it registers under its own name, holds one Lease stream and one StreamLogs stream
open for its whole life and heartbeats at the interval the controller hands out at registration.

For each lease it notes the arrival time (`time.time()`, the clock the controller's timestamps come
from, since both run on this host), then does what a real agent does for a stage printing one line:
UpdateStage(RUNNING), optionally waits `stage_s` (the stage's run time, so that stages overlap and
spread over several agents), one LogChunk (waiting for its ack, as the real agent does before its
final status), UpdateStage(SUCCEEDED). No executor runs: what the figures show is the controller.

Every loop here is bounded: by `stop()`, by the controller ending a stream, and by `lifetime_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import agent.client as client_module
from agent import __version__ as AGENT_VERSION
from agent.client import ControllerClient, LogStreamCall, RpcFailure
from agent.contract.types import (
    CancelStage,
    HeartbeatRequest,
    LeaseRequest,
    LogChunk,
    LogLine,
    RegisterRequest,
    StageLease,
    StageStatus,
    StageUpdate,
)

DEFAULT_HEARTBEAT_S = 2.0  # the real agent's default when the controller names no interval


def make_client(target: str, connection: int | None) -> ControllerClient:
    """A ControllerClient whose channel has its own TCP connection, or shares one with its group.

    gRPC core pools connections process-wide by (address, channel options): a thousand clients made
    the plain way would multiplex over a single connection, which is not what a thousand agent
    processes do to the controller. A distinct value of an otherwise unused channel option gives a
    channel its own connection; clients passing the same `connection` number share one. None keeps
    the client exactly as the real agent makes it.
    """
    if connection is None:
        return ControllerClient(target)
    # The options are a module constant read by ControllerClient.__init__; extend them for this one
    # construction only, rather than copying the client's set-up code here.
    options = (*client_module._CHANNEL_OPTIONS, ("buildit.bench.connection", connection))
    with mock.patch.object(client_module, "_CHANNEL_OPTIONS", options):
        return ControllerClient(target)


@dataclass(frozen=True)
class LeaseArrival:
    """One StageLease as it reached a simulated agent."""

    agent: str
    lease_id: str
    run_id: str
    attempt: int
    #: time.time() when the lease came off the stream.
    received: float
    #: Seconds since the epoch of the lease's deadline, as set by the controller (lease time + TTL).
    deadline: float | None


class SimAgent:
    """One simulated agent; `await start()`, then it serves leases until `await stop()`."""

    def __init__(
        self,
        target: str,
        name: str,
        registration_token: str,
        *,
        on_lease: Callable[[LeaseArrival], None],
        lifetime_s: float,
        capacity: int = 1,
        connection: int | None = None,
        jitter_first_heartbeat: bool = False,
        stage_s: float = 0.0,
    ) -> None:
        self.name = name
        self.registration_token = registration_token
        self.capacity = capacity
        self.on_lease = on_lease
        self.client = make_client(target, connection)
        self.agent_id = ""
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.jitter_first_heartbeat = jitter_first_heartbeat
        self.stage_s = stage_s
        self.completed = 0
        self.heartbeats = 0
        self.lost_reports = 0
        self.errors: list[str] = []
        #: Set whenever a stage completes or an error is recorded; a waiter clears it, then waits.
        self.progress = asyncio.Event()
        self._deadline = time.monotonic() + lifetime_s
        self._stopping = asyncio.Event()
        self._running: set[str] = set()
        self._log_call: LogStreamCall | None = None
        self._log_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Register, then open the Lease and StreamLogs streams and start heartbeating."""
        response = await self.client.register(
            RegisterRequest(
                registration_token=self.registration_token,
                name=self.name,
                labels={},
                executors=("local",),
                capacity=self.capacity,
                version=AGENT_VERSION,
            )
        )
        self.agent_id = response.agent_id
        self.client.token = response.agent_token
        if response.heartbeat_interval_ms > 0:
            self.heartbeat_s = response.heartbeat_interval_ms / 1000
        self._log_call = self.client.open_log_stream()
        self._spawn(self._lease_loop())
        self._spawn(self._heartbeat_loop())

    async def stop(self) -> None:
        """Close both streams and the channel; wait for this agent's tasks to end."""
        self._stopping.set()
        if self._log_call is not None:
            self._log_call.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()

    @property
    def busy(self) -> int:
        """Leases held right now."""
        return len(self._running)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _error(self, what: str, exc: BaseException | str) -> None:
        if not self._stopping.is_set():
            self.errors.append(f"{self.name}: {what}: {exc}")
            self.progress.set()

    async def _lease_loop(self) -> None:
        """Take leases off the one Lease stream until it ends (no reconnect: a bench must not hide that)."""
        stream = self.client.open_lease_stream(LeaseRequest(self.agent_id, self.capacity))
        try:
            async with contextlib.aclosing(stream.events()) as events:
                async for event in events:
                    if isinstance(event, StageLease):
                        received = time.time()
                        deadline = event.deadline.timestamp() if event.deadline is not None else None
                        self.on_lease(
                            LeaseArrival(
                                self.name, event.lease_id, event.run_id, event.attempt, received, deadline
                            )
                        )
                        self._running.add(event.lease_id)
                        self._spawn(self._run_stage(event.lease_id))
                    elif isinstance(event, CancelStage):
                        self._error(f"unexpected cancel of {event.lease_id}", event.reason)
            self._error("lease stream", "closed by the controller")
        except RpcFailure as exc:
            self._error("lease stream", exc)
        finally:
            stream.cancel()

    async def _heartbeat_loop(self) -> None:
        """Heartbeat every interval until stopped or past the lifetime, like the real agent.

        The first beat can be delayed by a random part of the interval: agents of a real fleet start
        at different moments, and a thousand beating in lockstep would measure a burst, not a fleet.
        """
        delay = self.heartbeat_s * random.random() if self.jitter_first_heartbeat else self.heartbeat_s
        while time.monotonic() < self._deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            delay = self.heartbeat_s
            try:
                response = await self.client.heartbeat(
                    HeartbeatRequest(
                        self.agent_id, tuple(self._running), max(self.capacity - self.busy, 0), False
                    )
                )
            except RpcFailure as exc:
                self._error("heartbeat", exc)
                continue
            self.heartbeats += 1
            # Not an error by itself: a heartbeat listing a lease whose final status overtook it is
            # answered "lost". A lease really taken away shows as a failed UpdateStage instead.
            self.lost_reports += len(response.lost_lease_ids)

    async def _run_stage(self, lease_id: str) -> None:
        """RUNNING, one acknowledged log chunk, SUCCEEDED: a real agent's calls for `echo …`."""
        try:
            started = datetime.now(UTC)
            await self.client.update_stage(StageUpdate(lease_id, StageStatus.RUNNING, started_at=started))
            if self.stage_s > 0:  # the stage's own run time, kept well below the lease TTL
                await asyncio.sleep(self.stage_s)
            assert self._log_call is not None
            async with self._log_lock:  # acks come back in order on the one stream: pair each with its chunk
                await self._log_call.send(LogChunk(lease_id, 1, (LogLine("bench"),)))
                ack = await self._log_call.receive()
            if ack is None or ack.lease_id != lease_id or ack.acked_seq != 1 or ack.lease_lost:
                raise RpcFailure("BENCH", f"unexpected log ack {ack!r}")
            await self.client.update_stage(
                StageUpdate(
                    lease_id,
                    StageStatus.SUCCEEDED,
                    exit_code=0,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                )
            )
            self.completed += 1
            self.progress.set()
        except RpcFailure as exc:
            self._error(f"stage {lease_id}", exc)
        finally:
            self._running.discard(lease_id)
