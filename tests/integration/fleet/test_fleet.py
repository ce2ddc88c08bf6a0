"""The controller and agents as separate processes on loopback, on SQLite and PostgreSQL.

Crashes are real: `kill -9` of an agent or of the controller mid-run. Lease TTL and heartbeat are
shortened through BUILDIT_LEASE_TTL / BUILDIT_HEARTBEAT_INTERVAL so recovery happens in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for

DAG = """
pipeline "fleet-dag"
stage "setup" { run "echo setup on $BUILDIT_STAGE_NAME"; }
stage "left" needs="setup" { run "echo left"; }
stage "right" needs="setup" { run "echo right"; }
stage "join" { needs "left" "right"; run "echo joined"; }
"""


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    with controller_with_agents(tmp_path, database_url) as fleet:
        yield fleet


def start_agents(
    controller: Controller, agents: list[Agent], tmp_path: Path, *names: str, **kw: object
) -> None:
    for name in names:
        agents.append(Agent(tmp_path, controller, name, **kw))  # type: ignore[arg-type]
    wait_for(
        lambda: sum(a["status"] == "online" for a in controller.agents()) >= len(agents), 30, "agents online"
    )


def test_dag_runs_to_success_across_two_agents(fleet: tuple[Controller, list[Agent]], tmp_path: Path) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "alpha", "beta")
    pipeline = controller.create_pipeline(DAG)
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    assert run["status"] == "succeeded", run
    assert [s["status"] for s in run["stages"]] == ["succeeded"] * 4
    assert all(s["agent"] in {"alpha", "beta"} for s in run["stages"])
    assert all(s["attempt"] == 1 and s["exit_code"] == 0 for s in run["stages"])
    assert (
        controller.log(pipeline, number, "setup") == "$ echo setup on $BUILDIT_STAGE_NAME\nsetup on setup\n"
    )
    assert controller.log(pipeline, number, "join").splitlines()[-1] == "joined"
    # Offsets: reading from the middle returns the rest.
    full = controller.raw_log(pipeline, number, "setup")
    assert controller.raw_log(pipeline, number, "setup", offset=5) == full[5:]
    listed = {a["name"]: a for a in controller.agents()}
    assert set(listed) == {"alpha", "beta"}
    assert listed["alpha"]["executors"] == ["local"] and listed["alpha"]["running"] == 0


def test_failure_skips_dependents_and_retries_user_failures(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "solo")
    counter = tmp_path / "count"
    pipeline = controller.create_pipeline(
        'pipeline "flaky"\n'
        f'stage "flaky" {{ retries 1; run "echo x >> {counter}; test $(wc -l < {counter}) -ge 2"; }}\n'
        'stage "broken" { run "echo about to fail"; run "exit 4"; }\n'
        'stage "after" needs="broken" { run "echo never"; }\n'
    )
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    stages = {s["name"]: s for s in run["stages"]}
    assert run["status"] == "failed"
    assert stages["flaky"]["status"] == "succeeded" and stages["flaky"]["attempt"] == 2
    assert stages["broken"]["status"] == "failed" and stages["broken"]["exit_code"] == 4
    assert stages["after"]["status"] == "skipped"
    assert controller.log(pipeline, number, "flaky", attempt=1).startswith("$ echo x")


def test_agent_killed_mid_stage_reruns_on_the_other_agent(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "first")
    marker = tmp_path / "started"
    pipeline = controller.create_pipeline(
        f'pipeline "survive"\nstage "long" {{ run "echo attempt; touch {marker}; sleep 4; echo done"; }}\n'
    )
    number = controller.trigger(pipeline)
    wait_for(marker.exists, 30, "the stage to start on the first agent")
    assert controller.stage(pipeline, number, "long")["agent"] == "first"
    start_agents(controller, agents, tmp_path, "second")
    agents[0].kill()
    run = controller.wait_run(pipeline, number, timeout=60)
    stage = run["stages"][0]
    assert run["status"] == "succeeded", run
    assert stage["agent"] == "second"
    assert stage["attempt"] == 2
    assert controller.log(pipeline, number, "long").splitlines() == [
        f"$ echo attempt; touch {marker}; sleep 4; echo done",
        "attempt",
        "done",
    ]


@pytest.mark.parametrize("ttl", ["10"])
def test_controller_killed_mid_run_loses_and_repeats_no_log_line(
    tmp_path: Path, database_url: str, ttl: str
) -> None:
    # A lease TTL longer than the restart: the running stage survives on its agent.
    controller = Controller(tmp_path, database_url, env={"BUILDIT_LEASE_TTL": ttl}).start()
    agents: list[Agent] = []
    try:
        _restart_scenario(controller, agents, tmp_path)
    finally:
        for agent in agents:
            agent.stop()
        controller.stop()


def _restart_scenario(controller: Controller, agents: list[Agent], tmp_path: Path) -> None:
    start_agents(controller, agents, tmp_path, "steady")
    pipeline = controller.create_pipeline(
        'pipeline "restart"\n'
        'stage "count" { run "i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); sleep 0.01; done"; }\n'
        'stage "after" needs="count" { run "echo after"; }\n'
    )
    number = controller.trigger(pipeline)
    wait_for(lambda: controller.stage(pipeline, number, "count")["log_size"] > 200, 30, "some log")
    controller.kill()
    time.sleep(0.5)
    controller.start()
    run = controller.wait_run(pipeline, number, timeout=60)
    assert run["status"] == "succeeded", run
    lines = controller.log(pipeline, number, "count").splitlines()
    assert lines[1:] == [f"line-{i}" for i in range(1, 301)]
    assert run["stages"][0]["attempt"] == 1


def test_cancel_reaches_a_running_stage_within_a_second(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "worker")
    marker = tmp_path / "running"
    pipeline = controller.create_pipeline(
        'pipeline "cancel"\n'
        f'stage "sleepy" {{ run "touch {marker}; sleep 60"; }}\n'
        'stage "later" needs="sleepy" { run "true"; }\n'
    )
    number = controller.trigger(pipeline)
    wait_for(marker.exists, 30, "the stage to start")
    wait_for(
        lambda: controller.stage(pipeline, number, "sleepy")["status"] == "running", 10, "running status"
    )
    started = time.monotonic()
    status, body, _ = controller.request("POST", f"/api/v1/pipelines/{pipeline}/runs/{number}/cancel")
    assert status == 200, body
    run = controller.wait_run(pipeline, number, timeout=10)
    assert time.monotonic() - started < 3
    stages = {s["name"]: s for s in run["stages"]}
    assert run["status"] == "cancelled"
    assert stages["sleepy"]["status"] == "cancelled"
    assert stages["later"]["status"] == "cancelled"
    status, body, _ = controller.request("POST", f"/api/v1/pipelines/{pipeline}/runs/{number}/cancel")
    assert status == 409 and "already finished" in body["detail"]


def test_stage_timeout_is_enforced(fleet: tuple[Controller, list[Agent]], tmp_path: Path) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "timer")
    pipeline = controller.create_pipeline('pipeline "slow"\nstage "slow" { timeout "1s"; run "sleep 30"; }\n')
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number, timeout=20)
    assert run["status"] == "failed"
    assert run["stages"][0]["status"] == "timed_out"


def test_timeout_marked_by_the_controller_when_the_agent_vanished(tmp_path: Path, database_url: str) -> None:
    # Long lease TTL: the stage timeout passes before the lease would expire.
    controller = Controller(tmp_path, database_url, env={"BUILDIT_LEASE_TTL": "60"}).start()
    agent = Agent(tmp_path, controller, "vanishing", env={"BUILDIT_LEASE_TTL": "60"})
    try:
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "agent online")
        marker = tmp_path / "go"
        pipeline = controller.create_pipeline(
            f'pipeline "vanish"\nstage "s" {{ timeout "1s"; run "touch {marker}; sleep 30"; }}\n'
        )
        number = controller.trigger(pipeline)
        wait_for(marker.exists, 30, "the stage to start")
        agent.kill()
        run = controller.wait_run(pipeline, number, timeout=30)
        assert run["stages"][0]["status"] == "timed_out"
        assert "agent did not report" in run["stages"][0]["message"]
    finally:
        agent.stop()
        controller.stop()


def test_labels_route_stages_to_matching_agents(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "plain")
    agents.append(Agent(tmp_path, controller, "gpu-box", labels="gpu=true"))
    wait_for(lambda: sum(a["status"] == "online" for a in controller.agents()) == 2, 30, "agents online")
    pipeline = controller.create_pipeline(
        'pipeline "labels"\nstage "train" { labels "gpu=true"; run "echo training"; }\n'
    )
    for _ in range(3):
        number = controller.trigger(pipeline)
        run = controller.wait_run(pipeline, number)
        assert run["stages"][0]["agent"] == "gpu-box"
