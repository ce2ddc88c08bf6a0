"""The scheduler's side of deleting a pipeline and removing an agent (in-memory store): what runs,
leases and agents become, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.contract.types import CancelReason, StageStatus
from controller.errors import Conflict, LeaseLost, NotFound, Unauthenticated
from tests.unit.scheduling.harness import Harness

PAIR = """
pipeline "pair"
stage "a" { run "echo a"; }
stage "b" needs="a" { run "echo b"; }
"""
ONE = 'pipeline "one"\nstage "only" { run "echo"; }\n'


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(tmp_path).start()
    yield h
    await h.close()


async def test_discarding_a_pipeline_cancels_its_runs_stops_their_agents_and_refuses_new_runs(
    harness: Harness,
) -> None:
    doomed = harness.store.add_pipeline(PAIR)
    other = harness.store.add_pipeline(ONE, name="other")
    agent = await harness.agent("one", capacity=1)
    running = await harness.scheduler.trigger(doomed)
    lease = await harness.lease(agent)
    await harness.scheduler.stage_started(agent, lease.lease_id, None)
    waiting = await harness.scheduler.trigger(doomed)  # queued: the only slot is taken
    kept = await harness.scheduler.trigger(other)

    ended = await harness.scheduler.discard_pipeline(doomed, "the pipeline was deleted")

    assert set(ended) == {running.id, waiting.id}
    order = await harness.cancel(agent)
    # A lost lease, not a user cancel: the agent stops and reports nothing more about the stage.
    assert (order.lease_id, order.reason) == (lease.lease_id, CancelReason.LEASE_LOST)
    for run in (running, waiting):
        stored = harness.store.stored_run(run.id)
        assert stored.status is StageStatus.CANCELLED and stored.finished_at is not None
        assert {s.status for s in stored.stages.values()} == {StageStatus.CANCELLED}
        assert run.id not in harness.scheduler.runs
    assert harness.store.stored_run(running.id).stages["a"].message == "the pipeline was deleted"
    # The agent's late report is refused; its slot went to the other pipeline's run at once.
    with pytest.raises(LeaseLost):
        await harness.scheduler.stage_finished(agent, lease.lease_id, StageStatus.CANCELLED, None, "")
    assert (await harness.lease(agent)).run_id == str(kept.id)
    with pytest.raises(NotFound):
        await harness.scheduler.trigger(doomed)


async def test_a_connected_agent_is_not_removed_and_nothing_changes(harness: Harness) -> None:
    agent = await harness.agent("busy")
    with pytest.raises(Conflict, match="agent busy is connected: stop its process first"):
        await harness.scheduler.remove_agent(agent)
    assert harness.scheduler.agent_by_id(agent) is not None
    assert harness.scheduler.agents[agent].online


async def test_removing_an_offline_agent_requeues_what_it_held_and_refuses_its_stream(
    harness: Harness,
) -> None:
    pipeline = harness.store.add_pipeline(ONE)
    gone = await harness.agent("gone")
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(gone)
    await harness.scheduler.stage_started(gone, lease.lease_id, None)
    await harness.disconnect(gone)  # its lease lives on until its TTL expires
    assert harness.statuses(run.id)["only"] is StageStatus.RUNNING

    await harness.scheduler.remove_agent(gone)

    assert harness.scheduler.agent_by_id(gone) is None
    stage = harness.store.stored_run(run.id).stages["only"]
    assert (stage.status, stage.attempt) == (StageStatus.QUEUED, 2)
    assert "agent gone was removed" in stage.message
    with pytest.raises(Unauthenticated):
        async for _ in harness.scheduler.open_stream(gone, [], idle_s=1):
            pass
    # Another agent takes the requeued stage; removing an unknown agent changes nothing.
    other = await harness.agent("other")
    assert (await harness.lease(other)).run_id == str(run.id)
    await harness.scheduler.remove_agent(gone)
