"""Waiting stages on the in-memory store: their reasons as the fleet changes, the queue timeout,
and stages cut off with the agent of the controller's own process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.contract.types import StageStatus
from controller.scheduling.scheduler import Scheduler
from controller.scheduling.waiting import EXPLAIN_AFTER_S
from tests.unit.scheduling.harness import TTL_S, Harness

WINDOWS = """
pipeline "win"
queue-timeout "10m"
stage "build" { labels "os=windows"; run "build.bat"; }
stage "test" needs="build" { labels "os=windows"; run "test.bat"; }
stage "lint" { queue-timeout "90s"; labels "os=linux"; run "lint"; }
"""


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(tmp_path).start()
    yield h
    await h.close()


async def tick(harness: Harness, seconds: float) -> None:
    """Move the clock and let the timer's work happen (what its sleep would do)."""
    harness.clock.advance(seconds)
    await harness.scheduler.check_deadlines()


async def test_a_stage_no_agent_can_take_says_why_and_is_taken_when_one_joins(harness: Harness) -> None:
    linux = await harness.agent("lin", capacity=2, labels={"os": "linux"})
    pipeline = harness.store.add_pipeline(WINDOWS)
    run = await harness.scheduler.trigger(pipeline)
    lint = await harness.lease(linux)
    assert lint.spec.name == "lint"
    build = run.stages["build"]
    # A moment in the queue is no news: no reason (and no write) before EXPLAIN_AFTER_S.
    await tick(harness, EXPLAIN_AFTER_S / 2)
    assert harness.store.stored_stage(build.id).waiting_reason == ""
    await tick(harness, EXPLAIN_AFTER_S / 2)
    why = "no connected agent has os=windows; agents: lin (os=linux)"
    assert harness.store.stored_stage(build.id).waiting_reason == why
    assert harness.store.stored_run(run.id).waiting_reason == f"stage 'build' waits: {why}"

    # Another agent without the label changes the words; one with it takes the stage at once.
    await harness.agent("lin2", labels={"os": "linux"})
    await tick(harness, 0)
    assert harness.store.stored_stage(build.id).waiting_reason == (
        "no connected agent has os=windows; agents: lin (os=linux), lin2 (os=linux)"
    )
    windows = await harness.agent("win", labels={"os": "windows"})
    lease = await harness.lease(windows)
    assert lease.spec.name == "build"
    stored = harness.store.stored_stage(build.id)
    assert (stored.waiting_reason, stored.lease_id) == ("", lease.lease_id)
    assert harness.store.stored_run(run.id).waiting_reason == ""


async def test_reasons_follow_drains_and_disconnects(harness: Harness) -> None:
    windows = await harness.agent("win", labels={"os": "windows"})
    pipeline = harness.store.add_pipeline(WINDOWS)
    first = await harness.scheduler.trigger(pipeline)
    await harness.lease(windows)  # first run's build: the only windows slot is taken
    second = await harness.scheduler.trigger(pipeline)
    await tick(harness, EXPLAIN_AFTER_S)
    build = second.stages["build"]
    assert harness.store.stored_stage(build.id).waiting_reason == (
        "the only matching agent, win, is busy (1 of 1 slots)"
    )
    await harness.scheduler.set_operator_drain(windows, True)
    await tick(harness, 0)
    assert harness.store.stored_stage(build.id).waiting_reason == (
        "the only matching agent, win, is draining (drained by an operator: resume it to give it stages)"
    )
    await harness.disconnect(windows)
    await tick(harness, 0)
    assert harness.store.stored_stage(build.id).waiting_reason == "the only matching agent, win, is offline"
    assert harness.store.stored_run(first.id).stages["build"].lease_id is not None


async def test_the_queue_timeout_ends_a_stage_no_agent_took_and_then_its_run(harness: Harness) -> None:
    await harness.agent("lin", labels={"os": "linux"})
    pipeline = harness.store.add_pipeline(WINDOWS)
    run = await harness.scheduler.trigger(pipeline)
    build = run.stages["build"]
    assert build.queue_timeout_s == 600.0 and run.stages["lint"].queue_timeout_s == 90.0
    await tick(harness, 599)
    assert harness.store.stored_stage(build.id).status is StageStatus.QUEUED
    await tick(harness, 1)
    stored = harness.store.stored_stage(build.id)
    assert stored.status is StageStatus.ERROR
    assert stored.message == (
        "no agent took it within 10m: no connected agent has os=windows; agents: lin (os=linux)"
    )
    assert stored.waiting_reason == "" and stored.finished_at == harness.clock()
    assert harness.statuses(run.id)["test"] is StageStatus.SKIPPED
    # lint is still leased to lin (never reported): the run ends when it does.
    assert harness.store.stored_run(run.id).status is StageStatus.RUNNING


async def test_the_queue_timeout_counts_each_attempt_and_not_the_time_the_controller_was_down(
    harness: Harness,
) -> None:
    pipeline = harness.store.add_pipeline('pipeline "p"\nstage "s" { queue-timeout "1m"; run "x"; }\n')
    run = await harness.scheduler.trigger(pipeline)
    await harness.scheduler.stop()
    harness.clock.advance(3600)  # down for an hour: the stage waited far longer than a minute
    again = Scheduler(
        harness.store, harness.scheduler.logs, harness.events, lease_ttl_s=TTL_S, clock=harness.clock
    )
    harness.scheduler = again
    await again.start()
    stage = run.stages["s"]
    assert harness.store.stored_stage(stage.id).status is StageStatus.QUEUED
    # The agents get one TTL to come back, as held leases do.
    await tick(harness, TTL_S)
    ended = harness.store.stored_stage(stage.id)
    assert ended.status is StageStatus.ERROR
    assert ended.message == (
        "no agent took it within 1m: no agent is registered: start one with `buildit agent` "
        "(the controller's banner shows how)"
    )
    assert harness.store.stored_run(run.id).status is StageStatus.ERROR


async def test_stages_cut_off_with_the_embedded_agent_are_cancelled_unless_they_have_retries(
    harness: Harness,
) -> None:
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nstage "plain" { run "x"; }\nstage "retried" { retries 1; run "y"; }\n'
        'stage "after" needs="plain" { run "z"; }\n'
    )
    agent = await harness.agent("local", capacity=2)
    run = await harness.scheduler.trigger(pipeline)
    leases = {lease.spec.name: lease for lease in [await harness.lease(agent), await harness.lease(agent)]}
    for lease in leases.values():
        await harness.scheduler.stage_started(agent, lease.lease_id, None)
    await harness.disconnect(agent)

    cut = await harness.scheduler.cut_off(agent, "controller stopped")
    assert sorted(s.name for s in cut) == ["plain", "retried"]
    stored = harness.store.stored_run(run.id).stages
    assert (stored["plain"].status, stored["plain"].message) == (StageStatus.CANCELLED, "controller stopped")
    assert stored["after"].status is StageStatus.SKIPPED
    retried = stored["retried"]
    assert (retried.status, retried.attempt) == (StageStatus.QUEUED, 2)
    assert retried.message == "attempt 1 cut off: controller stopped; retrying"
    assert not harness.scheduler.by_lease
    # Nothing of it is held any more: a second call finds nothing.
    assert await harness.scheduler.cut_off(agent, "controller stopped") == []
