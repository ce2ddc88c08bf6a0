"""Operator actions on the scheduler, on a real database (SQLite and PostgreSQL): retrying one stage,
re-running a run, draining and resuming an agent.

Agents are the scheduler's own API (the calls the gRPC servicer makes), as in test_scheduler.py;
tests/integration/fleet/test_operator_actions.py drives the same actions through REST with real
processes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.contract.types import CancelStage, StageLease, StageStatus, WorkspaceSource
from controller.agents.tables import Agent
from controller.errors import BuildItError
from controller.events import Event
from controller.pipelines.services import create_pipeline
from controller.runs.tables import Run, StageRun
from tests.integration.scheduling.test_scheduler import Harness, statuses

CHAIN = """
pipeline "chain"
stage "a" { run "echo a"; }
stage "b" needs="a" { retries 1; run "echo b"; }
stage "c" needs="b" { run "echo c"; }
stage "d" needs="c" { run "echo d"; }
stage "w" needs="b" { when branch="release/*"; run "echo only on releases"; }
"""


@pytest.fixture
async def harness(db: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    await h.start()
    yield h
    for agent_id in list(h.streams):
        await h.disconnect(agent_id)
    await h.scheduler.stop()


async def restart(harness: Harness) -> None:
    """A controller restart: a new scheduler on the same database (agents reconnect)."""
    agents = list(harness.streams)
    for agent_id in agents:
        await harness.disconnect(agent_id)
    await harness.scheduler.stop()
    await harness.start()
    for agent_id in agents:
        await harness.connect(agent_id)


async def rows(run_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    found = await StageRun.select().where(StageRun.run == run_id)
    return {r["name"]: r for r in found}


async def run_row(run_id: uuid.UUID) -> dict[str, Any]:
    row: dict[str, Any] = await Run.select().where(Run.id == run_id).first()
    return row


async def fail(harness: Harness, agent: uuid.UUID, offer: StageLease, lines: bytes = b"") -> None:
    await harness.run_stage(agent, offer, lines, status=StageStatus.FAILED, exit_code=1)


# --------------------------------------------------------------------------- retry a stage


async def test_retrying_a_failed_stage_reopens_the_run_and_its_skipped_dependents(harness: Harness) -> None:
    pipeline = await create_pipeline(harness.org, harness.tenant, CHAIN, None)
    agent = await harness.agent("solo")
    run = await harness.scheduler.trigger(pipeline["id"], branch="main")
    await harness.run_stage(agent, await harness.next_event(agent))  # a
    first = await harness.next_event(agent)
    await fail(harness, agent, first, b"attempt one\n")  # b attempt 1, retried by its `retries 1`
    second = await harness.next_event(agent)
    assert (second.spec.name, second.attempt) == ("b", 2)
    await fail(harness, agent, second, b"attempt two\n")
    before = await rows(run.id)
    assert (await run_row(run.id))["status"] == "failed"
    assert (before["b"]["status"], before["b"]["user_retries_used"]) == ("failed", 1)
    assert before["c"]["status"] == before["d"]["status"] == "skipped"
    assert before["w"]["status"] == "skipped"  # by its `when`: stays skipped
    assert run.id not in harness.scheduler.runs

    async with harness.scheduler.events.subscribe(run.id) as events:
        retried = await harness.scheduler.retry_stage(run.id, "b")
        seen: list[Event] = []
        while not events.empty():
            event = events.get_nowait()
            assert isinstance(event, Event)
            seen.append(event)
    assert retried.id == run.id and harness.scheduler.runs[run.id] is retried
    # Live watchers hear that the run is active again and that b and its dependents changed.
    assert any(e.kind == "run" and not e.subject.status.finished for e in seen)
    assert {e.subject.name for e in seen if e.kind == "stage"} >= {"b", "c", "d"}

    third = await harness.next_event(agent)
    assert (third.spec.name, third.attempt) == ("b", 3)
    after = await rows(run.id)
    assert (after["b"]["attempt"], after["b"]["user_retries_used"], after["b"]["infra_failures"]) == (3, 0, 0)
    assert after["b"]["exit_code"] is None and after["b"]["finished_at"] is None
    assert after["c"]["status"] == after["d"]["status"] == "pending"
    assert after["w"]["status"] == "skipped"
    stored = await run_row(run.id)
    assert stored["status"] == "running" and stored["finished_at"] is None
    assert not stored["cancel_requested"]

    # The reset budget: attempt 3 fails and is retried automatically once more (`retries 1`).
    await fail(harness, agent, third)
    fourth = await harness.next_event(agent)
    assert (fourth.spec.name, fourth.attempt) == ("b", 4)
    await harness.run_stage(agent, fourth, b"attempt four\n")
    for name in ("c", "d"):
        offer = await harness.next_event(agent)
        assert offer.spec.name == name and offer.attempt == 1
        await harness.run_stage(agent, offer)
    final = await run_row(run.id)
    assert final["status"] == "succeeded" and final["finished_at"] is not None
    assert await statuses(run.id) == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "succeeded",
        "d": "succeeded",
        "w": "skipped",
    }
    logs = harness.scheduler.logs
    assert logs.find(run.id, "b", 1).read_bytes() == b"attempt one\n"
    assert logs.find(run.id, "b", 2).read_bytes() == b"attempt two\n"
    assert logs.find(run.id, "b", 4).read_bytes() == b"attempt four\n"
    assert run.id not in harness.scheduler.runs


async def test_a_finished_run_is_retried_after_a_controller_restart(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org,
        harness.tenant,
        'pipeline "r"\nstage "a" { run "x"; }\nstage "b" needs="a" { run "y"; }\n',
        None,
    )
    agent = await harness.agent("solo")
    run = await harness.scheduler.trigger(pipeline["id"])
    await fail(harness, agent, await harness.next_event(agent))
    assert (await run_row(run.id))["status"] == "failed"
    await restart(harness)
    assert run.id not in harness.scheduler.runs
    await harness.scheduler.retry_stage(run.id, "a")
    offer = await harness.next_event(agent)
    assert (offer.spec.name, offer.attempt) == ("a", 2)
    await harness.run_stage(agent, offer)
    offer_b = await harness.next_event(agent)
    assert offer_b.spec.name == "b"
    await harness.run_stage(agent, offer_b)
    assert (await run_row(run.id))["status"] == "succeeded"


async def test_a_stage_is_retried_while_the_rest_of_the_run_still_runs(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org,
        harness.tenant,
        'pipeline "p"\nstage "fast" { run "false"; }\nstage "slow" { run "sleep 9"; }\n'
        'stage "after" needs="fast" { run "true"; }\n',
        None,
    )
    agent = await harness.agent("wide", capacity=2)
    run = await harness.scheduler.trigger(pipeline["id"])
    offers = {o.spec.name: o for o in [await harness.next_event(agent), await harness.next_event(agent)]}
    await harness.scheduler.stage_started(agent, offers["slow"].lease_id, None)
    await fail(harness, agent, offers["fast"])
    assert (await statuses(run.id))["after"] == "skipped"
    assert (await run_row(run.id))["status"] == "running"

    await harness.scheduler.retry_stage(run.id, "fast")
    again = await harness.next_event(agent)
    assert (again.spec.name, again.attempt) == ("fast", 2)
    await harness.run_stage(agent, again)
    after = await harness.next_event(agent)
    assert after.spec.name == "after"
    await harness.run_stage(agent, after)
    assert (await run_row(run.id))["status"] == "running"  # slow still runs
    await harness.scheduler.stage_finished(agent, offers["slow"].lease_id, StageStatus.SUCCEEDED, 0, "")
    assert (await run_row(run.id))["status"] == "succeeded"


async def test_a_cancelled_run_is_resumed_by_retrying_its_cancelled_stage(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org,
        harness.tenant,
        'pipeline "c"\nstage "a" { run "x"; }\nstage "b" needs="a" { run "y"; }\n',
        None,
    )
    agent = await harness.agent("solo")
    run = await harness.scheduler.trigger(pipeline["id"])
    offer = await harness.next_event(agent)
    await harness.scheduler.stage_started(agent, offer.lease_id, None)
    await harness.scheduler.cancel_run(run.id)
    order = await harness.next_event(agent)
    assert isinstance(order, CancelStage)
    # While the cancel is under way nothing can be retried.
    with pytest.raises(BuildItError) as busy:
        await harness.scheduler.retry_stage(run.id, "b")
    assert busy.value.kind == "conflict"
    await harness.scheduler.stage_finished(agent, offer.lease_id, StageStatus.CANCELLED, None, "cancelled")
    stored = await run_row(run.id)
    assert stored["status"] == "cancelled" and stored["cancel_requested"]
    # b never ran because a was cancelled: retrying b alone cannot work, the message says what to do.
    with pytest.raises(BuildItError) as blocked:
        await harness.scheduler.retry_stage(run.id, "b")
    assert blocked.value.kind == "conflict" and "retry that stage instead" in blocked.value.message

    await harness.scheduler.retry_stage(run.id, "a")
    stored = await run_row(run.id)
    assert not stored["cancel_requested"] and stored["finished_at"] is None
    again = await harness.next_event(agent)
    assert (again.spec.name, again.attempt) == ("a", 2)
    await harness.run_stage(agent, again)
    offer_b = await harness.next_event(agent)
    assert (offer_b.spec.name, offer_b.attempt) == ("b", 1)  # it never ran: same attempt
    await harness.run_stage(agent, offer_b)
    assert (await run_row(run.id))["status"] == "succeeded"


async def test_retry_refuses_stages_that_are_not_failed_and_changes_nothing(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org, harness.tenant, 'pipeline "n"\nstage "a" { run "x"; }\nstage "b" { run "y"; }\n', None
    )
    agent = await harness.agent("solo")
    run = await harness.scheduler.trigger(pipeline["id"])
    offer = await harness.next_event(agent)
    await harness.scheduler.stage_started(agent, offer.lease_id, None)
    running, queued = offer.spec.name, ("b" if offer.spec.name == "a" else "a")
    before = (await rows(run.id), await run_row(run.id))

    async def refused(run_id: uuid.UUID, name: str) -> BuildItError:
        with pytest.raises(BuildItError) as caught:
            await harness.scheduler.retry_stage(run_id, name)
        return caught.value

    exc = await refused(run.id, running)
    assert exc.kind == "conflict"
    assert exc.message == (
        f"stage '{running}' is running; only a failed, timed-out, errored or cancelled stage can be retried"
    )
    assert (await refused(run.id, queued)).kind == "conflict"
    missing = await refused(run.id, "nope")
    assert missing.kind == "not_found" and "its stages: a, b" in missing.message
    assert (await refused(uuid.uuid4(), "a")).kind == "not_found"
    assert (await rows(run.id), await run_row(run.id)) == before

    await harness.run_stage(agent, offer)
    await harness.run_stage(agent, await harness.next_event(agent))
    done = (await rows(run.id), await run_row(run.id))
    assert done[1]["status"] == "succeeded"
    exc = await refused(run.id, "a")
    assert exc.kind == "conflict" and "is succeeded" in exc.message
    assert (await rows(run.id), await run_row(run.id)) == done
    assert run.id not in harness.scheduler.runs


# --------------------------------------------------------------------------- re-run


async def test_rerun_makes_the_next_run_of_the_same_commit_and_pipeline_file(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org, harness.tenant, 'pipeline "stored"\nstage "s" { run "x"; }\n', None
    )
    agent = await harness.agent("solo")
    # As the trigger engine runs a repository's commit: its own file and a workspace at the commit.
    source = 'pipeline "at-commit"\nstage "one" { run "x"; }\nstage "two" needs="one" { run "y"; }\n'
    workspace = WorkspaceSource("http://127.0.0.1:1/git/r.git", "ab" * 20, "refs/heads/main")
    run = await harness.scheduler.trigger(
        pipeline["id"],
        branch="main",
        sha="ab" * 20,
        message="fix: things",
        author="Dev <dev@example.com>",
        trigger="watch",
        source=source,
        workspace=workspace,
    )
    offer = await harness.next_event(agent)
    with pytest.raises(BuildItError) as busy:
        await harness.scheduler.rerun(run.id)
    assert busy.value.kind == "conflict" and "cancel it first" in busy.value.message
    await harness.run_stage(agent, offer)
    await fail(harness, agent, await harness.next_event(agent))
    assert (await run_row(run.id))["status"] == "failed"

    await restart(harness)  # what is needed is stored, not held in memory
    again = await harness.scheduler.rerun(run.id, repo_url="http://127.0.0.1:2/git/r.git")
    assert again.number == run.number + 1 and again.id != run.id
    assert list(again.stages) == ["one", "two"]  # the file the run used, not the stored pipeline
    new = await run_row(again.id)
    old = await run_row(run.id)
    for key in ("pipeline", "branch", "sha", "commit_message", "author", "pipeline_source"):
        assert new[key] == old[key], key
    assert new["trigger"] == "rerun"
    offer = await harness.next_event(agent)
    assert offer.spec.name == "one" and offer.attempt == 1
    assert offer.spec.source == WorkspaceSource("http://127.0.0.1:2/git/r.git", "ab" * 20, "refs/heads/main")
    assert offer.spec.env["BUILDIT_GIT_SHA"] == "ab" * 20
    assert offer.spec.env["BUILDIT_RUN_NUMBER"] == str(again.number)
    with pytest.raises(BuildItError) as missing:
        await harness.scheduler.rerun(uuid.uuid4())
    assert missing.value.kind == "not_found"


# --------------------------------------------------------------------------- drain / resume


async def test_operator_drain_holds_new_leases_across_heartbeats_and_restarts(harness: Harness) -> None:
    pipeline = await create_pipeline(
        harness.org, harness.tenant, 'pipeline "d"\nstage "s" { run "x"; }\n', None
    )
    agent = await harness.agent("worker", capacity=2)
    busy = await harness.scheduler.trigger(pipeline["id"])
    running = await harness.next_event(agent)
    await harness.scheduler.stage_started(agent, running.lease_id, None)

    async with harness.scheduler.events.subscribe(kinds=frozenset({"agent"})) as events:
        conn = await harness.scheduler.set_operator_drain(agent, True)
        event = events.get_nowait()
    assert isinstance(event, Event) and event.subject is conn
    assert conn.draining and conn.drain_requested_by == "operator" and conn.free == 0
    row = await Agent.select().where(Agent.id == agent).first()
    assert (row["operator_drain"], row["status"]) == (True, "draining")

    waiting = await harness.scheduler.trigger(pipeline["id"])
    assert (await statuses(waiting.id)) == {"s": "queued"}
    # The agent's heartbeat says it is not draining itself: the operator's drain holds.
    lost = await harness.scheduler.heartbeat(agent, [running.lease_id], 1, False)
    assert lost == [] and conn.draining and conn.drain_requested_by == "operator"
    assert (await statuses(waiting.id)) == {"s": "queued"}
    # The stage it already had runs to the end.
    await harness.scheduler.stage_finished(agent, running.lease_id, StageStatus.SUCCEEDED, 0, "")
    assert (await run_row(busy.id))["status"] == "succeeded"
    assert (await statuses(waiting.id)) == {"s": "queued"}

    await restart(harness)
    conn = harness.scheduler.agents[agent]
    assert conn.online and conn.drain_requested_by == "operator"
    await harness.scheduler.heartbeat(agent, [], 2, False)
    assert (await statuses(waiting.id)) == {"s": "queued"}
    assert harness.streams[agent][0].empty()

    resumed = await harness.scheduler.set_operator_drain(agent, False)
    assert not resumed.draining and resumed.drain_requested_by is None
    offer = await harness.next_event(agent)
    assert isinstance(offer, StageLease) and offer.run_id == str(waiting.id)
    row = await Agent.select().where(Agent.id == agent).first()
    assert (row["operator_drain"], row["status"]) == (False, "online")
    with pytest.raises(BuildItError) as missing:
        await harness.scheduler.set_operator_drain(uuid.uuid4(), True)
    assert missing.value.kind == "not_found"


async def test_the_agents_own_drain_and_the_operators_are_told_apart(harness: Harness) -> None:
    agent = await harness.agent("worker")
    await harness.scheduler.heartbeat(agent, [], 0, True)
    conn = harness.scheduler.agents[agent]
    assert conn.drain_requested_by == "agent"
    await harness.scheduler.set_operator_drain(agent, True)
    assert conn.drain_requested_by == "operator"
    await harness.scheduler.heartbeat(agent, [], 1, False)  # the agent stops draining itself
    assert conn.drain_requested_by == "operator" and conn.draining
    await harness.scheduler.set_operator_drain(agent, False)
    assert conn.drain_requested_by is None and not conn.draining
    # A drained agent process exits; the next one to open a lease stream is not draining itself,
    # while an operator's drain outlives the reconnect.
    await harness.scheduler.heartbeat(agent, [], 0, True)
    await harness.scheduler.set_operator_drain(agent, True)
    await harness.disconnect(agent)
    await harness.connect(agent)
    assert conn.drain_requested_by == "operator" and not conn.agent_draining
