"""One trigger operation behind every door: gRPC, REST (by pipeline, by repository, by name) and the CLI.

A watched repository triggered through any door takes the same path: the mirror is fetched, the
exact commit is run with its own `.buildit.kdl`, and the trigger's extra variables reach the stage
as `${env.NAME}`. Real controller and agent processes, a real Git repository, real gRPC.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for
from tests.integration.triggers.gitrepos import commit, git, make_repo

# ${env.GREETING} is declared with a default (validation refuses undeclared names: typos); a trigger
# variable replaces it. EXTRA is not declared: it still reaches the stage's environment.
PIPELINE = (
    'pipeline "doors"\nenv "GREETING" "nobody"\n'
    'stage "show" {{ run "echo version={} greeting=${{env.GREETING}} extra=$EXTRA"; }}\n'
)
PIPELINE_V1 = PIPELINE.format("one")
PIPELINE_V2 = PIPELINE.format("two")


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    with controller_with_agents(tmp_path, database_url) as (controller, agents):
        agents.append(Agent(tmp_path, controller, "worker", capacity=2))
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")
        yield controller, agents


@pytest.fixture
def repo(fleet: tuple[Controller, list[Agent]], tmp_path: Path) -> dict[str, Any]:
    """A watched repository with two commits: the first (v1) and the head (v2)."""
    controller, _ = fleet
    work = make_repo(tmp_path / "doors", {".buildit.kdl": PIPELINE_V1})
    first = git(work, "rev-parse", "HEAD")
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(work), "name": "doors"})
    assert status == 201, body
    head = commit(work, {".buildit.kdl": PIPELINE_V2}, "v2")
    return {**body, "first": first, "head": head}


def log_of(controller: Controller, run: dict[str, Any]) -> str:
    finished = controller.wait_run(run["pipeline_id"], run["number"])
    assert finished["status"] == "succeeded", (finished["error"], finished["stages"])
    return controller.log(run["pipeline_id"], run["number"], "show")


def test_grpc_trigger_of_a_watched_repository_runs_the_exact_commit_with_env(
    fleet: tuple[Controller, list[Agent]], repo: dict[str, Any]
) -> None:
    controller, _ = fleet
    with controller.channel() as channel:
        api = pb_grpc.BuildItServiceStub(channel)
        request = pb.TriggerRunRequest(
            repository="doors",
            ref="refs/heads/main",
            commit_sha=repo["first"],
            env={"GREETING": "hi", "EXTRA": "more"},
        )
        run = api.TriggerRun(request, timeout=60).run
    assert run.commit_sha == repo["first"] and run.ref == "main"
    # The run of the older commit used that commit's .buildit.kdl, fetched from the repository now.
    body = controller.request("GET", f"/api/v1/pipelines/{repo['pipeline_id']}/runs/{run.number}")[1]
    assert "version=one greeting=hi extra=more" in log_of(controller, body)


def test_every_door_takes_the_repository_path(
    fleet: tuple[Controller, list[Agent]], repo: dict[str, Any], tmp_path: Path
) -> None:
    controller, _ = fleet
    doors = {
        "by pipeline": f"/api/v1/pipelines/{repo['pipeline_id']}/runs",
        "by repository": f"/api/v1/repos/{repo['id']}/runs",
        "by name": "/api/v1/runs",
    }
    for door, path in doors.items():
        body = {"env": {"GREETING": door.replace(" ", "-")}, "target": "doors"}
        status, run, _ = controller.request("POST", path, body)
        assert status == 201, (door, run)
        assert run["sha"] == repo["head"] and run["branch"] == "main", (door, run)
        assert f"version=two greeting={door.replace(' ', '-')}" in log_of(controller, run), door
    # The CLI is a client of the same operation.
    env = {**os.environ, "BUILDIT_URL": controller.base_url, "BUILDIT_TOKEN": controller.api_key}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "trigger",
            "doors",
            "--sha",
            repo["first"],
            "--env",
            "GREETING=cli",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    number = int(done.stdout.split(" run ")[1].split(":")[0])
    run = controller.request("GET", f"/api/v1/pipelines/{repo['pipeline_id']}/runs/{number}")[1]
    assert run["sha"] == repo["first"]
    assert "version=one greeting=cli" in log_of(controller, run)


def test_a_bad_trigger_is_refused_alike_on_rest_and_grpc(
    fleet: tuple[Controller, list[Agent]], repo: dict[str, Any]
) -> None:
    controller, _ = fleet
    cases = [
        ({"target": "no-such-thing"}, 404, grpc.StatusCode.NOT_FOUND),
        ({"target": "doors", "sha": "abc"}, 400, grpc.StatusCode.INVALID_ARGUMENT),
        ({"target": "doors", "env": {"1BAD": "x"}}, 400, grpc.StatusCode.INVALID_ARGUMENT),
        ({"target": "doors", "branch": "nope"}, 404, grpc.StatusCode.NOT_FOUND),
    ]
    with controller.channel() as channel:
        api = pb_grpc.BuildItServiceStub(channel)
        for body, http_status, code in cases:
            status, answer, _ = controller.request("POST", "/api/v1/runs", body)
            assert status == http_status, (body, answer)
            request = pb.TriggerRunRequest(
                repository=body["target"],
                ref=body.get("branch", ""),
                commit_sha=body.get("sha", ""),
                env=body.get("env", {}),
            )
            with pytest.raises(grpc.RpcError) as refused:
                api.TriggerRun(request, timeout=60)
            assert refused.value.code() == code, (body, refused.value.details())
            assert refused.value.details() == answer["detail"], body
