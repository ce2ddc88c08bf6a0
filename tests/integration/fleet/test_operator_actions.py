"""Operator actions end to end: a real `buildit controller` and a real local-executor `buildit agent`,
driven through REST and gRPC (SQLite and PostgreSQL): retry a stage, re-run a run, drain and resume
an agent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for

SHA = "0123456789abcdef0123456789abcdef01234567"
IDLE_S = 2.0


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    with controller_with_agents(tmp_path, database_url) as fleet:
        yield fleet


def start_agent(controller: Controller, agents: list[Agent], tmp_path: Path, name: str) -> dict[str, Any]:
    agents.append(Agent(tmp_path, controller, name))

    def online() -> dict[str, Any] | None:
        return next((a for a in controller.agents() if a["name"] == name and a["status"] == "online"), None)

    found: dict[str, Any] = wait_for(online, 30, f"agent {name} online")
    return found


def runs_path(pipeline: str, number: int) -> str:
    return f"/api/v1/pipelines/{pipeline}/runs/{number}"


def unlogged(run: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON without the stages' log sizes."""
    return {**run, "stages": [{k: v for k, v in s.items() if k != "log_size"} for s in run["stages"]]}


def test_retry_a_failed_stage_then_rerun_the_run(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agent(controller, agents, tmp_path, "solo")
    marker = tmp_path / "tried-once"
    pipeline = controller.create_pipeline(
        'pipeline "ops"\n'
        f'stage "flaky" {{ run "test -f {marker} || {{ touch {marker}; echo first try fails; exit 3; }}"; '
        'run "echo passed"; }\n'
        'stage "after" needs="flaky" { run "echo after ran"; }\n'
    )
    status, body, _ = controller.request(
        "POST",
        f"/api/v1/pipelines/{pipeline}/runs",
        {"branch": "main", "sha": SHA, "message": "fix things", "author": "Dev <dev@example.com>"},
    )
    assert status == 201, body
    number = body["number"]
    run = controller.wait_run(pipeline, number)
    stages = {s["name"]: s for s in run["stages"]}
    assert run["status"] == "failed"
    assert (stages["flaky"]["status"], stages["flaky"]["exit_code"]) == ("failed", 3)
    assert stages["after"]["status"] == "skipped"

    # Not retryable: a skipped stage; unknown stage and run: 404. Nothing changes.
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/stages/after/retry")
    assert status == 409 and "only a failed, timed-out, errored or cancelled stage" in body["detail"], body
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/stages/nope/retry")
    assert status == 404 and "no stage 'nope'" in body["detail"], body
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, 99)}/stages/flaky/retry")
    assert status == 404, body
    assert controller.run(pipeline, number) == run
    first_duration = run["duration_s"]
    assert first_duration is not None and run["queued_s"] is not None

    time.sleep(IDLE_S)  # before the retry: idle time, which the run's duration must not count
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/stages/flaky/retry")
    assert status == 200, body
    assert body["duration_s"] is None  # running again: known once it has finished
    assert body["number"] == number and body["status"] not in ("failed", "succeeded")
    retried = {s["name"]: s for s in body["stages"]}
    assert retried["flaky"]["attempt"] == 2 and retried["after"]["attempt"] == 1
    assert retried["after"]["status"] in ("pending", "queued", "running", "succeeded")
    run = controller.wait_run(pipeline, number)
    stages = {s["name"]: s for s in run["stages"]}
    assert run["status"] == "succeeded", run
    assert (stages["flaky"]["status"], stages["flaky"]["attempt"]) == ("succeeded", 2)
    assert stages["after"]["status"] == "succeeded" and stages["after"]["agent"] == "solo"
    assert "first try fails" in controller.log(pipeline, number, "flaky", attempt=1)
    assert "passed" not in controller.log(pipeline, number, "flaky", attempt=1)
    assert controller.log(pipeline, number, "flaky").splitlines()[-1] == "passed"
    assert controller.log(pipeline, number, "after").splitlines()[-1] == "after ran"
    # Its duration is the time its stages ran: from start to end, less the idle time before the
    # retry; the time the retried stages waited for the agent is apart.
    wall = (
        datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])
    ).total_seconds()
    # The current attempts count (the first attempt of "flaky" is not kept: controller.runs.timing),
    # so the retried run's duration need not exceed the first one's; the idle time never counts.
    assert 0 < run["duration_s"] <= wall - IDLE_S, (first_duration, run["duration_s"], wall)
    ran = [
        (datetime.fromisoformat(s["finished_at"]) - datetime.fromisoformat(s["started_at"])).total_seconds()
        for s in run["stages"]
    ]
    assert run["duration_s"] >= sum(ran) - 0.01  # "after" runs after "flaky": no overlap
    assert run["queued_s"] is not None and run["queued_s"] >= 0

    # A succeeded stage cannot be retried, and the refusal changes nothing.
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/stages/flaky/retry")
    assert status == 409 and "is succeeded" in body["detail"], body
    assert controller.run(pipeline, number) == run

    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/rerun")
    assert status == 201, body
    assert body["number"] == number + 1 and body["trigger"] == "rerun"
    assert (body["sha"], body["branch"], body["commit_message"], body["author"]) == (
        SHA,
        "main",
        "fix things",
        "Dev <dev@example.com>",
    )
    again = controller.wait_run(pipeline, number + 1)
    assert again["status"] == "succeeded" and [s["attempt"] for s in again["stages"]] == [1, 1]
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, 99)}/rerun")
    assert status == 404, body


def test_a_running_stage_and_an_unfinished_run_are_refused(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agent(controller, agents, tmp_path, "solo")
    started, gate = tmp_path / "started", tmp_path / "gate"
    pipeline = controller.create_pipeline(
        'pipeline "hold"\n'
        f'stage "hold" {{ run "touch {started}; while [ ! -f {gate} ]; do sleep 0.05; done"; }}\n'
    )
    number = controller.trigger(pipeline)
    wait_for(started.exists, 30, "the stage to start")
    before = controller.run(pipeline, number)
    assert before["stages"][0]["status"] == "running"
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/stages/hold/retry")
    assert status == 409, body
    assert body["detail"] == (
        "stage 'hold' is running; only a failed, timed-out, errored or cancelled stage can be retried"
    )
    status, body, _ = controller.request("POST", f"{runs_path(pipeline, number)}/rerun")
    assert status == 409 and "cancel it first" in body["detail"], body
    # Nothing changed (but the log, which the agent may still be shipping).
    assert unlogged(controller.run(pipeline, number)) == unlogged(before)
    gate.touch()
    assert controller.wait_run(pipeline, number)["status"] == "succeeded"
    status, runs, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs")
    assert [r["number"] for r in runs["runs"]] == [number]


def test_operator_drain_survives_heartbeats_and_a_restart_and_resume_leases_at_once(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    worker = start_agent(controller, agents, tmp_path, "worker")
    agent_id = worker["id"]
    assert worker["drain_requested_by"] is None

    status, body, _ = controller.request("POST", f"/api/v1/agents/{uuid.uuid4()}/drain")
    assert status == 404 and "not found" in body["detail"], body
    status, body, _ = controller.request("POST", f"/api/v1/agents/{agent_id}/drain")
    assert status == 200, body
    assert (body["id"], body["status"], body["drain_requested_by"]) == (agent_id, "draining", "operator")

    pipeline = controller.create_pipeline('pipeline "drained"\nstage "s" { run "echo ran"; }\n')
    number = controller.trigger(pipeline)

    def heartbeats_after(seen: str | None) -> dict[str, Any] | None:
        # The agent heartbeats every 0.3 s: a newer last_seen means the controller heard it again.
        listed = next(a for a in controller.agents() if a["id"] == agent_id)
        return listed if listed["status"] != "offline" and listed["last_seen"] != seen else None

    seen = body["last_seen"]
    for _ in range(3):
        listed = wait_for(lambda: heartbeats_after(seen), 30, "a heartbeat")  # noqa: B023
        seen = listed["last_seen"]
        assert (listed["status"], listed["drain_requested_by"]) == ("draining", "operator")
    assert controller.stage(pipeline, number, "s")["status"] == "queued"
    assert agents[0].proc.proc.poll() is None, agents[0].proc.output  # drained, not gone

    controller.stop()
    controller.start()

    def back() -> dict[str, Any] | None:
        listed = next(a for a in controller.agents() if a["id"] == agent_id)
        return listed if listed["status"] != "offline" else None

    listed = wait_for(back, 60, "the agent to reconnect")
    assert (listed["status"], listed["drain_requested_by"]) == ("draining", "operator")
    seen = listed["last_seen"]
    for _ in range(2):
        listed = wait_for(lambda: heartbeats_after(seen), 30, "a heartbeat")  # noqa: B023
        seen = listed["last_seen"]
        assert (listed["status"], listed["drain_requested_by"]) == ("draining", "operator")
    assert controller.stage(pipeline, number, "s")["status"] == "queued"
    assert agents[0].proc.proc.poll() is None, agents[0].proc.output

    status, body, _ = controller.request("POST", f"/api/v1/agents/{agent_id}/resume")
    assert status == 200, body
    assert (body["status"], body["drain_requested_by"]) == ("online", None)
    run = controller.wait_run(pipeline, number)
    assert run["status"] == "succeeded" and run["stages"][0]["agent"] == "worker"
    assert controller.log(pipeline, number, "s").splitlines()[-1] == "ran"


def test_the_same_actions_over_grpc(fleet: tuple[Controller, list[Agent]], tmp_path: Path) -> None:
    controller, agents = fleet
    worker = start_agent(controller, agents, tmp_path, "solo")
    marker = tmp_path / "tried-once"
    pipeline = controller.create_pipeline(
        f'pipeline "grpc-ops"\nstage "flaky" {{ run "test -f {marker} || {{ touch {marker}; exit 3; }}"; }}\n'
    )
    number = controller.trigger(pipeline)
    assert controller.wait_run(pipeline, number)["status"] == "failed"
    run_id = controller.run(pipeline, number)["id"]
    channel = controller.channel()
    try:
        api = pb_grpc.BuildItServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unknown:
            api.RetryStage(pb.RetryStageRequest(run_id=run_id, stage_name="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        retried = api.RetryStage(pb.RetryStageRequest(run_id=run_id, stage_name="flaky"), timeout=10).run
        assert retried.stages[0].attempt == 2 and retried.status != pb.STAGE_STATUS_FAILED
        assert controller.wait_run(pipeline, number)["status"] == "succeeded"
        with pytest.raises(grpc.RpcError) as refused:
            api.RetryStage(pb.RetryStageRequest(run_id=run_id, stage_name="flaky"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is succeeded" in (refused.value.details() or "")

        rerun = api.RerunRun(pb.RerunRunRequest(run_id=run_id), timeout=10).run
        assert rerun.number == number + 1 and rerun.trigger == pb.RUN_TRIGGER_RERUN
        assert controller.wait_run(pipeline, number + 1)["status"] == "succeeded"

        drained = api.DrainAgent(pb.DrainAgentRequest(agent_id=worker["id"], drain=True), timeout=10).agent
        assert (drained.status, drained.drain_requested_by) == (pb.AGENT_STATUS_DRAINING, "operator")
        listed = api.ListAgents(pb.ListAgentsRequest(), timeout=10).agents
        assert [(a.name, a.drain_requested_by) for a in listed] == [("solo", "operator")]
        resumed = api.DrainAgent(pb.DrainAgentRequest(agent_id=worker["id"], drain=False), timeout=10).agent
        assert (resumed.status, resumed.drain_requested_by) == (pb.AGENT_STATUS_ONLINE, "")
        with pytest.raises(grpc.RpcError) as missing:
            api.DrainAgent(pb.DrainAgentRequest(agent_id=str(uuid.uuid4()), drain=True), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
