"""The scheduler's state machine on the in-memory store: leases, expiry, fencing, cancel, operator
actions, and that a big trigger does not hold up the other operations."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.contract.types import CancelReason, StageStatus
from controller.errors import Conflict, Invalid, LeaseLost, NotFound
from controller.scheduling.scheduler import OFFLOAD_SOURCE_CHARS, Scheduler
from tests.unit.scheduling.harness import TTL_S, Harness

CHAIN = """
pipeline "chain"
stage "a" { run "echo a"; }
stage "b" needs="a" { run "echo b"; }
stage "c" needs="b" { run "echo c"; }
stage "d" needs="c" { run "echo d"; }
stage "e" { run "echo independent"; }
"""

PAIR = """
pipeline "pair"
stage "a" { run "echo a"; }
stage "b" needs="a" { run "echo b"; }
"""


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(tmp_path).start()
    yield h
    await h.close()


def fields(stage: Any) -> dict[str, Any]:
    """A stage's fields, to compare two snapshots."""
    return dict(vars(stage))


async def test_trigger_leases_on_an_open_stream_and_a_finished_stage_readies_its_dependents(
    harness: Harness,
) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    assert run.number == 1
    lease = await harness.lease(agent)
    a = run.stages["a"]
    assert (lease.spec.name, lease.attempt, lease.run_id, lease.stage_run_id) == (
        "a",
        1,
        str(run.id),
        str(a.id),
    )
    assert lease.deadline == harness.clock() + timedelta(seconds=TTL_S)
    stored = harness.store.stored_stage(a.id)
    assert stored.lease_id == lease.lease_id and stored.agent_id == agent
    assert harness.statuses(run.id) == {"a": StageStatus.QUEUED, "b": StageStatus.PENDING}

    await harness.scheduler.stage_started(agent, lease.lease_id, None)
    assert harness.store.stored_stage(a.id).status is StageStatus.RUNNING
    assert harness.store.stored_run(run.id).status is StageStatus.RUNNING
    await harness.scheduler.stage_finished(agent, lease.lease_id, StageStatus.SUCCEEDED, 0, "")
    assert harness.store.stored_stage(a.id).status is StageStatus.SUCCEEDED
    # b was ready at once and went to the agent, whose slot a freed.
    lease_b = await harness.lease(agent)
    assert lease_b.spec.name == "b"
    await harness.run_stage(agent, lease_b)
    done = harness.store.stored_run(run.id)
    assert done.status is StageStatus.SUCCEEDED and done.finished_at is not None
    assert run.id not in harness.scheduler.runs


async def test_an_expired_lease_is_requeued_with_the_next_attempt_until_the_retries_run_out(
    harness: Harness,
) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("flaky")
    run = await harness.scheduler.trigger(pipeline)
    a = run.stages["a"]
    lease = await harness.lease(agent)
    for attempt in (2, 3):
        # A heartbeat within the TTL keeps it; silence past the deadline loses it.
        harness.clock.advance(TTL_S - 1)
        await harness.scheduler.check_deadlines()
        assert harness.store.stored_stage(a.id).lease_id == lease.lease_id
        harness.clock.advance(2)
        await harness.scheduler.check_deadlines()
        lost = await harness.cancel(agent)
        assert (lost.lease_id, lost.reason) == (lease.lease_id, CancelReason.LEASE_LOST)
        lease = await harness.lease(agent)  # requeued, and the agent has a free slot again
        assert lease.spec.name == "a" and lease.attempt == attempt
        stored = harness.store.stored_stage(a.id)
        assert stored.attempt == attempt and stored.infra_failures == attempt - 1
    harness.clock.advance(TTL_S + 1)
    await harness.scheduler.check_deadlines()
    await harness.cancel(agent)
    final = harness.store.stored_run(run.id)
    assert final.stages["a"].status is StageStatus.ERROR
    assert "giving up" in final.stages["a"].message
    assert final.stages["b"].status is StageStatus.SKIPPED
    assert final.status is StageStatus.ERROR


async def test_a_write_under_an_old_lease_is_refused_and_changes_nothing(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    zombie = await harness.agent("zombie")
    run = await harness.scheduler.trigger(pipeline)
    old = await harness.lease(zombie)
    await harness.scheduler.stage_started(zombie, old.lease_id, None)
    harness.clock.advance(TTL_S + 1)
    await harness.scheduler.check_deadlines()
    await harness.cancel(zombie)
    new = await harness.lease(zombie)
    assert new.lease_id != old.lease_id and new.attempt == 2

    stage = run.stages["a"]
    stored_before, live_before = fields(harness.store.stored_stage(stage.id)), fields(stage)
    with pytest.raises(LeaseLost):
        await harness.scheduler.stage_started(zombie, old.lease_id, None)
    with pytest.raises(LeaseLost):
        await harness.scheduler.stage_finished(zombie, old.lease_id, StageStatus.SUCCEEDED, 0, "")
    with pytest.raises(LeaseLost):
        await harness.scheduler.extend(zombie, old.lease_id)
    assert await harness.scheduler.append_logs(zombie, old.lease_id, 1, b"late\n") == (0, True)
    assert await harness.scheduler.heartbeat(zombie, [old.lease_id], 0, False) == [old.lease_id]
    # Another agent cannot write under the current lease either.
    other = await harness.agent("other")
    with pytest.raises(LeaseLost):
        await harness.scheduler.stage_finished(other, new.lease_id, StageStatus.FAILED, 1, "")
    assert fields(harness.store.stored_stage(stage.id)) == stored_before
    assert fields(stage) == live_before


async def test_cancel_ends_queued_stages_and_tells_agents_to_stop_leased_ones(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "y"; }\nstage "c" needs="a,b" { run "z"; }\n'
    )
    agent = await harness.agent("one", capacity=1)
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(agent)
    await harness.scheduler.stage_started(agent, lease.lease_id, None)
    queued = "b" if lease.spec.name == "a" else "a"
    assert harness.statuses(run.id)[queued] is StageStatus.QUEUED

    await harness.scheduler.cancel_run(run.id)
    order = await harness.cancel(agent)
    assert (order.lease_id, order.reason) == (lease.lease_id, CancelReason.USER)
    statuses = harness.statuses(run.id)
    assert statuses[queued] is StageStatus.CANCELLED and statuses["c"] is StageStatus.CANCELLED
    assert statuses[lease.spec.name] is StageStatus.RUNNING  # until its agent confirms
    assert harness.store.stored_run(run.id).cancel_requested
    await harness.scheduler.stage_finished(agent, lease.lease_id, StageStatus.CANCELLED, None, "")
    assert harness.store.stored_run(run.id).status is StageStatus.CANCELLED
    # Nothing else was leased: the freed slot found an empty queue.
    assert harness.pending_events(agent) == 0


async def test_a_cancel_the_agent_never_confirms_ends_at_its_grace_deadline(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("deaf")
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(agent)
    await harness.scheduler.stage_started(agent, lease.lease_id, None)
    await harness.scheduler.cancel_run(run.id)
    await harness.cancel(agent)
    harness.clock.advance(10.5)  # CANCEL_GRACE_S, while heartbeats keep the lease itself alive
    await harness.scheduler.check_deadlines()
    final = harness.store.stored_run(run.id)
    assert final.stages["a"].status is StageStatus.CANCELLED and final.status is StageStatus.CANCELLED


async def test_a_failure_skips_the_whole_chain_below_it_and_nothing_else(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(CHAIN)
    agent = await harness.agent("one", capacity=2)
    run = await harness.scheduler.trigger(pipeline)
    leases = {lease.spec.name: lease for lease in [await harness.lease(agent), await harness.lease(agent)]}
    assert set(leases) == {"a", "e"}
    await harness.run_stage(agent, leases["a"], StageStatus.FAILED, 1)
    stored = harness.store.stored_run(run.id)
    assert {n: (s.status, s.message) for n, s in stored.stages.items() if n in "bcd"} == {
        "b": (StageStatus.SKIPPED, "skipped: needs a"),
        "c": (StageStatus.SKIPPED, "skipped: needs b"),
        "d": (StageStatus.SKIPPED, "skipped: needs c"),
    }
    assert stored.status is StageStatus.RUNNING  # e still runs
    await harness.run_stage(agent, leases["e"])
    assert harness.store.stored_run(run.id).status is StageStatus.FAILED


async def test_a_stage_with_retries_runs_again_after_a_failure(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline('pipeline "p"\nstage "a" { retries 1; run "x"; }\n')
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    await harness.run_stage(agent, await harness.lease(agent), StageStatus.FAILED, 1)
    again = await harness.lease(agent)
    assert again.attempt == 2
    await harness.run_stage(agent, again, StageStatus.FAILED, 1)
    assert harness.store.stored_run(run.id).status is StageStatus.FAILED


async def test_retry_stage_runs_it_again_with_the_stages_it_blocked(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    await harness.run_stage(agent, await harness.lease(agent), StageStatus.FAILED, 1)
    assert harness.store.stored_run(run.id).status is StageStatus.FAILED
    with pytest.raises(Conflict, match="is skipped; only a failed"):
        await harness.scheduler.retry_stage(run.id, "b")
    with pytest.raises(NotFound):
        await harness.scheduler.retry_stage(run.id, "nope")
    with pytest.raises(NotFound):
        await harness.scheduler.retry_stage(uuid.uuid4(), "a")

    await harness.scheduler.retry_stage(run.id, "a")
    again = await harness.lease(agent)
    assert (again.spec.name, again.attempt) == ("a", 2)
    assert harness.statuses(run.id)["b"] is StageStatus.PENDING
    assert harness.store.stored_run(run.id).finished_at is None
    await harness.run_stage(agent, again)
    await harness.run_stage(agent, await harness.lease(agent))
    assert harness.store.stored_run(run.id).status is StageStatus.SUCCEEDED
    with pytest.raises(Conflict, match="succeeded"):
        await harness.scheduler.retry_stage(run.id, "a")


async def test_rerun_makes_the_next_run_from_the_same_file_commit_and_variables(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nenv "TARGET" "default"\nstage "a" { run "echo ${env.TARGET}"; }\n'
    )
    agent = await harness.agent("one")
    first = await harness.scheduler.trigger(
        pipeline, branch="dev", sha="abc123", message="m", author="ann", env={"TARGET": "staging"}
    )
    with pytest.raises(Conflict, match="cancel it first"):
        await harness.scheduler.rerun(first.id)
    await harness.run_stage(agent, await harness.lease(agent))
    # The stored pipeline changing does not change what a re-run builds.
    harness.store.pipelines[pipeline] = ("p", 'pipeline "p"\nstage "other" { run "x"; }\n')
    second = await harness.scheduler.rerun(first.id)
    lease = await harness.lease(agent)
    assert second.number == 2 and lease.spec.name == "a"
    assert lease.spec.env["TARGET"] == "staging" and lease.spec.env["BUILDIT_GIT_BRANCH"] == "dev"
    origin = await harness.store.run_origin(second.id)
    assert origin is not None and dict(origin.env) == {"TARGET": "staging"} and origin.sha == "abc123"
    with pytest.raises(NotFound):
        await harness.scheduler.rerun(uuid.uuid4())


async def test_an_operator_drained_agent_gets_nothing_new_until_resumed(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("one")
    await harness.scheduler.set_operator_drain(agent, True)
    assert harness.store.stored_agent(agent).operator_draining
    assert harness.store.agent_status[agent] == "draining"
    run = await harness.scheduler.trigger(pipeline)
    # The agent's own heartbeat (not draining) does not undo an operator's drain.
    await harness.scheduler.heartbeat(agent, [], 1, False)
    assert run.stages["a"].lease_id is None and harness.statuses(run.id)["a"] is StageStatus.QUEUED
    assert harness.pending_events(agent) == 0
    await harness.scheduler.set_operator_drain(agent, False)
    assert (await harness.lease(agent)).spec.name == "a"
    assert harness.store.agent_status[agent] == "online"
    with pytest.raises(NotFound):
        await harness.scheduler.set_operator_drain(uuid.uuid4(), True)


async def test_finished_at_from_the_agent_is_kept_within_started_at_and_now(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "y"; }\nstage "c" { run "z"; }\n'
    )
    agent = await harness.agent("skewed", capacity=3)
    await harness.scheduler.trigger(pipeline)
    leases = {lease.spec.name: lease for lease in [await harness.lease(agent) for _ in range(3)]}
    start = harness.clock()
    for lease in leases.values():
        await harness.scheduler.stage_started(agent, lease.lease_id, start)
    harness.clock.advance(60)
    now = harness.clock()
    reported = {
        "a": start + timedelta(seconds=20),
        "b": now + timedelta(hours=1),
        "c": start - timedelta(hours=1),
    }
    ended = {}
    for name, lease in leases.items():
        stage = await harness.scheduler.stage_finished(
            agent, lease.lease_id, StageStatus.SUCCEEDED, 0, "", finished_at=reported[name]
        )
        ended[name] = harness.store.stored_stage(stage.id).finished_at
    assert ended == {"a": reported["a"], "b": now, "c": start}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"1BAD": "x"}, "name"),
        ({"A-B": "x"}, "name"),
        ({f"V{i}": "x" for i in range(101)}, "at most 100"),
        ({"BIG": "x" * (64 * 1024 + 1)}, "longer than 64 KiB"),
        ({"NUL": "a\0b"}, "NUL"),
        ({"NUM": 5}, "string"),
    ],
)
async def test_trigger_refuses_bad_variables_and_stores_nothing(
    harness: Harness, env: dict[str, Any], problem: str
) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    with pytest.raises(Invalid, match=problem):
        await harness.scheduler.trigger(pipeline, env=env)
    assert harness.store.run_ids() == []
    assert await harness.store.next_run_number(pipeline) == 1  # no number was taken


async def test_trigger_variables_reach_every_stage_over_the_files_own(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nenv "MODE" "file"\nenv "GREETING" "hi ${env.MODE}"\n'
        'env "EXTRA" ""\nstage "a" { env "MODE" "stage"; run "echo $MODE"; }\n'
        'stage "b" { run "echo ${env.EXTRA}"; }\n'
    )
    run = await harness.scheduler.trigger(pipeline, env={"MODE": "trigger", "EXTRA": "x" * (64 * 1024)})
    specs = {name: stage.spec for name, stage in run.stages.items()}
    assert specs["a"].env["MODE"] == "trigger" and specs["b"].env["MODE"] == "trigger"
    assert specs["a"].env["GREETING"] == "hi trigger"
    assert specs["b"].env["EXTRA"] == "x" * (64 * 1024)
    assert specs["b"].commands == ("echo ${EXTRA}",)


async def test_an_invalid_pipeline_makes_a_run_in_error(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline('pipeline "p"\nstage "a" needs="missing" { run "x"; }\n')
    run = await harness.scheduler.trigger(pipeline)
    stored = harness.store.stored_run(run.id)
    assert stored.status is StageStatus.ERROR and "missing" in run.error and stored.stages == {}
    with pytest.raises(NotFound):
        await harness.scheduler.trigger(uuid.uuid4())


async def test_a_restarted_scheduler_resumes_from_the_store(harness: Harness, tmp_path: Path) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(agent)
    await harness.scheduler.stage_started(agent, lease.lease_id, None)
    await harness.disconnect(agent)
    await harness.scheduler.stop()

    again = Scheduler(harness.store, harness.scheduler.logs, harness.events, clock=harness.clock)
    harness.scheduler = again
    await again.start()
    try:
        # The agent comes back still running the stage: it keeps it and finishes it.
        await harness.connect(agent, running=[lease.lease_id])
        await again.stage_finished(agent, lease.lease_id, StageStatus.SUCCEEDED, 0, "")
        await harness.run_stage(agent, await harness.lease(agent))
        assert harness.store.stored_run(run.id).status is StageStatus.SUCCEEDED
    finally:
        await harness.close()


def big_pipeline(stages: int) -> str:
    """A pipeline file above the size that is parsed in a worker thread."""
    lines = ['pipeline "big"']
    lines += [f'stage "s{i}" {{ run "echo {"x" * 200} {i}"; }}' for i in range(stages)]
    source = "\n".join(lines) + "\n"
    assert len(source) > OFFLOAD_SOURCE_CHARS
    return source


async def test_a_big_trigger_parses_in_a_thread_while_other_operations_proceed(harness: Harness) -> None:
    # One worker thread, held busy by the test: the big trigger's parse waits for it, provably off
    # the event loop and outside the scheduler's lock.
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(executor)
    gate = threading.Event()
    held = loop.run_in_executor(None, gate.wait)
    try:
        big = harness.store.add_pipeline(big_pipeline(400))
        small = harness.store.add_pipeline(PAIR)
        agent = await harness.agent("one")
        big_trigger = asyncio.create_task(harness.scheduler.trigger(big))
        await asyncio.sleep(0)  # let it start and reach its thread
        small_run = await asyncio.wait_for(harness.scheduler.trigger(small), 10)
        lease = await harness.lease(agent)
        await harness.run_stage(agent, lease)
        assert lease.run_id == str(small_run.id)
        assert not big_trigger.done()
        gate.set()
        await held
        big_run = await asyncio.wait_for(big_trigger, 60)
        assert len(big_run.stages) == 400 and big_run.number == 1
        assert harness.store.stored_run(big_run.id).status is StageStatus.QUEUED
    finally:
        gate.set()
        executor.shutdown(wait=False)


async def test_retry_is_refused_below_an_unsucceeded_need_and_while_cancelling(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(PAIR)
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(agent)
    await harness.scheduler.stage_started(agent, lease.lease_id, None)
    await harness.scheduler.cancel_run(run.id)
    await harness.cancel(agent)
    with pytest.raises(Conflict, match="being cancelled"):
        await harness.scheduler.retry_stage(run.id, "b")
    await harness.scheduler.stage_finished(agent, lease.lease_id, StageStatus.CANCELLED, None, "")
    assert harness.statuses(run.id) == {"a": StageStatus.CANCELLED, "b": StageStatus.CANCELLED}
    before = harness.store.stored_run(run.id)
    with pytest.raises(Conflict, match="needs 'a', which did not succeed"):
        await harness.scheduler.retry_stage(run.id, "b")
    after = harness.store.stored_run(run.id)
    assert (after.status, after.finished_at) == (before.status, before.finished_at)
