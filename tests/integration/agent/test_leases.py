"""agent.leases against the fake controller: the Lease stream and heartbeats, and lost leases."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from agent.contract.types import CancelReason, StageStatus
from agent.errors import AgentExit
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.harness import running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)


# --- the Lease stream ----------------------------------------------------------------------------


async def test_a_refused_lease_stream_ends_the_agent_without_registering_again(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.failures["Lease"] = [grpc.StatusCode.PERMISSION_DENIED]
    async with running_agent(fake, tmp_path) as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "Lease stream" in refused.value.message and "PERMISSION_DENIED" in refused.value.message
    assert len(fake.registrations) == 1


# --- lost leases ----------------------------------------------------------------------------------------


TICKING = "while true; do echo tick; sleep 0.02; done"


@pytest.mark.parametrize("how", ["extend_aborted", "heartbeat", "log_ack", "cancel_lease_lost"])
async def test_a_lost_lease_kills_its_stage_and_reports_nothing(
    how: str, fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(TICKING))
        await fake.wait_for(lambda: "tick" in fake.lines(lease))
        lost_at = time.monotonic()
        if how == "extend_aborted":
            fake.abort_extends.add(lease)
        elif how == "heartbeat":
            fake.lost_in_heartbeat.add(lease)
        elif how == "log_ack":
            fake.lost_in_log_acks.add(lease)
        else:
            fake.push_cancel(lease, CancelReason.LEASE_LOST)
        await fake.wait_for(lambda: lease not in agent.running_lease_ids, timeout=5, what="the stage to stop")
        took = time.monotonic() - lost_at
        chunks = len(fake.chunks_received)
        await asyncio.sleep(0.3)
        assert len(fake.chunks_received) == chunks  # its buffered output was dropped, not sent
    assert took < 1.5
    assert fake.updates_for(lease) == [StageStatus.RUNNING]
