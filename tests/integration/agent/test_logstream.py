"""agent.logstream against the fake controller: logs across broken streams and controller restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.contract.types import StageStatus
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.harness import assert_log_stream_clean, running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)


# --- logs across reconnects ------------------------------------------------------------------------


async def test_log_stream_closed_mid_stage_resends_unacked_chunks_exactly_once(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.close_log_stream_after = 2  # the 2nd chunk is stored but its ack is lost with the stream
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("for i in $(seq 1 40); do echo n$i; sleep 0.01; done"))
        await fake.wait_for(lambda: fake.final_update(lease))
    assert fake.log_streams_opened >= 2
    assert fake.lines(lease) == ["$ for i in $(seq 1 40); do echo n$i; sleep 0.01; done"] + [
        f"n{i}" for i in range(1, 41)
    ]
    assert_log_stream_clean(fake, lease)
    # The chunk whose ack was lost went out twice; the fake stored it once.
    seqs = [seq for lid, seq in fake.chunks_received if lid == lease]
    assert len(seqs) == len(set(seqs)) + 1


async def test_controller_restart_mid_stage_loses_nothing(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("for i in $(seq 1 60); do echo r$i; sleep 0.04; done"))
        await fake.wait_for(lambda: len(fake.lines(lease)) > 5)
        await fake.stop()
        await asyncio.sleep(0.3)  # the stage keeps running while the controller is away
        await fake.start()
        await serving(fake, 2)
        # The reopened lease stream tells the controller which lease is still running.
        assert fake.final_update(lease) is None
        assert list(fake.lease_requests[-1].running_lease_ids) == [lease]
        await fake.wait_for(lambda: fake.final_update(lease), timeout=15)
    assert fake.lines(lease)[1:] == [f"r{i}" for i in range(1, 61)]
    assert_log_stream_clean(fake, lease)
    assert fake.updates_for(lease)[-1] is StageStatus.SUCCEEDED
