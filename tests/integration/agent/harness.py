"""Running an `Agent` against the fake controller in the test's event loop, for the agent's tests.

The agent runs in the test's own event loop (fast, and the fake's records can be inspected at any
moment); `running_agent` starts it and stops it (not drains it) when the test leaves the block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.contract.types import StageSpec
from agent.errors import AgentExit
from agent.executors.registry import Executors, build_executors
from agent.runner import Agent
from agent.settings import AgentSettings
from tests.integration.agent.fake_controller import FakeController


def spec(*commands: str, **kw: Any) -> StageSpec:
    return StageSpec(name=kw.pop("name", "stage"), index=0, commands=commands, **kw)


@contextlib.asynccontextmanager
async def running_agent(
    fake: FakeController, state_dir: Path, executors: Executors | None = None, **kw: Any
) -> AsyncIterator[tuple[Agent, asyncio.Task[int]]]:
    """An Agent serving `fake`; stopped (not drained) on exit unless the test ended it."""
    settings = AgentSettings(
        controller=fake.address,
        registration_token=kw.pop("registration_token", "enrol"),
        name=kw.pop("name", "test-agent"),
        state_dir=state_dir,
        **kw,
    )
    agent = Agent(settings, executors or build_executors("local"))
    task = asyncio.create_task(agent.run())
    try:
        yield agent, task
    finally:
        if not task.done():
            agent.stop()
        with contextlib.suppress(AgentExit):
            await asyncio.wait_for(task, 15)


async def serving(fake: FakeController, count: int = 1) -> None:
    await fake.wait_for(
        lambda: fake.lease_stream_open and fake.lease_streams_opened >= count, what="the lease stream"
    )


def assert_log_stream_clean(fake: FakeController, lease_id: str) -> None:
    """Contiguous seqs 1..n were stored (the fake stores only seq == last + 1)."""
    sent = sorted({seq for lease, seq in fake.chunks_received if lease == lease_id})
    assert sent == list(range(1, len(sent) + 1))
    assert fake.stored_seq.get(lease_id, 0) == len(sent)
