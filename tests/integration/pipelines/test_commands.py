"""Editing and deleting pipelines through REST and gRPC, on a real controller and a real local agent
(SQLite and PostgreSQL): validation that changes nothing, versions, the next run on the new file,
runs keeping theirs, deletion with the runs, their logs and artifacts, a running stage stopped on
its agent, and a watched repository's pipeline refused with what to do instead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for
from tests.integration.triggers.gitrepos import make_repo

V1 = 'pipeline "app"\nstage "a" { run "echo first version"; }\n'
V2 = 'pipeline "app"\nstage "a" { run "echo second version"; }\nstage "b" needs="a" { run "echo b ran"; }\n'
# KDL 1.0: a one-line block needs `;` before `}` (the `}` at 2:21 is where the parser stops).
BAD = 'pipeline "app"\nstage "a" { run "x" }\n'
# Parses, but `needs` names a stage that does not exist and a stage has no `run`.
BAD_STAGES = 'pipeline "app"\nstage "a" { run "x"; }\nstage "b" needs="nope" { run "y"; }\nstage "c" {\n}\n'


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    with controller_with_agents(tmp_path, database_url) as (controller, agents):
        agents.append(Agent(tmp_path, controller, "solo"))
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")
        yield controller


def audit(controller: Controller) -> list[str]:
    status, body, _ = controller.request("GET", "/api/v1/audit")
    assert status == 200, body
    return [f"{e['action']} {e['target']}" for e in body["events"]]


def stage_names(run: dict[str, Any]) -> list[str]:
    return [s["name"] for s in run["stages"]]


def test_an_edit_is_validated_versioned_and_used_by_the_next_run_while_runs_keep_their_file(
    fleet: Controller,
) -> None:
    controller = fleet
    pipeline = controller.create_pipeline(V1)
    first = controller.wait_run(pipeline, controller.trigger(pipeline))
    assert first["status"] == "succeeded" and stage_names(first) == ["a"]
    path = f"/api/v1/pipelines/{pipeline}"

    # An invalid file: every problem at FILE:LINE:COL with its hint, and nothing changes.
    status, body, _ = controller.request("PUT", path, {"config": BAD})
    assert status == 422, body
    (syntax,) = body["extra"]["diagnostics"]
    assert (syntax["line"], syntax["col"]) == (2, 21)
    assert syntax["text"].startswith(".buildit.kdl:2:21: error:")
    assert 'write: stage "a" { run "x"; }' in syntax["hint"]
    status, body, _ = controller.request("PUT", path, {"config": BAD_STAGES})
    assert status == 422, body
    texts = [d["text"] for d in body["extra"]["diagnostics"]]
    assert len(texts) == 2 and any("'nope'" in t for t in texts) and any(":4:" in t for t in texts), texts
    for bad in ({}, {"config": "  "}, {"config": 'pipeline "x"\0'}):
        status, body, _ = controller.request("PUT", path, bad)
        assert status == 400 and "'config'" in body["detail"], body
    status, body, _ = controller.request("GET", path)
    assert (body["config"], body["version"]) == (V1, 1)

    # A good one is version 2; the same file again changes nothing.
    status, body, _ = controller.request("PUT", path, {"config": V2})
    assert status == 200 and (body["version"], body["changed"], body["config"]) == (2, True, V2), body
    status, body, _ = controller.request("PUT", path, {"config": V2})
    assert status == 200 and (body["version"], body["changed"]) == (2, False), body

    second = controller.wait_run(pipeline, controller.trigger(pipeline))
    assert second["status"] == "succeeded" and stage_names(second) == ["a", "b"]
    assert "second version" in controller.log(pipeline, second["number"], "a")
    # Run 1 kept the file it ran: its re-run plans from version 1.
    status, rerun, _ = controller.request("POST", f"{path}/runs/{first['number']}/rerun")
    assert status == 201, rerun
    rerun = controller.wait_run(pipeline, rerun["number"])
    assert stage_names(rerun) == ["a"] and "first version" in controller.log(pipeline, rerun["number"], "a")

    status, history, _ = controller.request("GET", f"{path}/versions")
    assert status == 200 and history["version"] == 2, history
    assert [(v["version"], v["created_by"]) for v in history["versions"]] == [(2, "admin"), (1, "admin")]
    status, old, _ = controller.request("GET", f"{path}/versions/1")
    assert status == 200 and old["config"] == V1, old
    status, body, _ = controller.request("GET", f"{path}/versions/3")
    assert status == 404 and "no version 3" in body["detail"], body
    status, body, _ = controller.request("PUT", "/api/v1/pipelines/00000000-0000-4000-8000-000000000000", {})
    assert status == 404, body
    assert "pipeline.update app (version 2)" in audit(controller)


def _processes_mentioning(marker: str) -> list[int]:
    """Processes whose command line contains `marker` (the stage's shell, its children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_delete_cancels_the_running_run_on_its_agent_and_removes_runs_logs_and_artifacts(
    fleet: Controller, tmp_path: Path
) -> None:
    controller = fleet
    started, finished = tmp_path / "slow-started", tmp_path / "slow-finished"
    pipeline = controller.create_pipeline(
        'pipeline "doomed"\n'
        'stage "make" { run "echo artifact-data > out.txt"; artifacts "out.txt"; }\n'
        f'stage "slow" needs="make" {{ run "echo waiting; touch {started}; sleep 45; touch {finished}"; }}\n'
    )
    number = controller.trigger(pipeline)
    wait_for(started.exists, 60, "the slow stage to start")
    run = controller.run(pipeline, number)
    assert run["status"] == "running"
    status, files, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts")
    assert status == 200 and [a["path"] for a in files["artifacts"]] == ["out.txt"], files
    data = controller.workdir / "data"
    sha = files["artifacts"][0]["sha256"]
    blob = data / "artifacts" / sha[:2] / sha
    logs = wait_for(
        lambda: len(found := sorted((data / "logs").rglob(f"{run['id']}.*.log"))) == 2 and found,
        30,
        "both stages' logs",
    )
    assert blob.exists()
    aged = blob.stat().st_mtime - 600  # stored long ago: no upload could be about to point at it
    os.utime(blob, (aged, aged))

    assert _processes_mentioning(str(started)), "the stage's shell should be running"
    status, body, _ = controller.request("DELETE", f"/api/v1/pipelines/{pipeline}")
    assert status == 204, body

    # The agent was told at once: the stage's processes are gone long before its sleep would end.
    wait_for(lambda: not _processes_mentioning(str(started)), 20, "the slow stage's processes to end")
    assert not finished.exists()
    for path in (f"/api/v1/pipelines/{pipeline}", f"/api/v1/pipelines/{pipeline}/runs/{number}"):
        status, body, _ = controller.request("GET", path)
        assert status == 404, (path, body)
    assert not any(p.exists() for p in logs) and not blob.exists()
    assert f"pipeline.delete doomed ({pipeline}, 1 run(s))" in audit(controller)
    # The agent is free again for other pipelines.
    other = controller.create_pipeline('pipeline "after"\nstage "a" { run "echo after"; }\n')
    assert controller.wait_run(other, controller.trigger(other))["status"] == "succeeded"
    status, body, _ = controller.request("DELETE", f"/api/v1/pipelines/{pipeline}")
    assert status == 404, body


def test_grpc_reads_edits_and_deletes_a_pipeline_by_name(fleet: Controller) -> None:
    controller = fleet
    pipeline = controller.create_pipeline(V1)
    controller.wait_run(pipeline, controller.trigger(pipeline))
    with controller.channel() as channel:
        stub = pb_grpc.BuildItServiceStub(channel)
        got = stub.GetPipeline(pb.GetPipelineRequest(pipeline="app"), timeout=10).pipeline
        assert (got.id, got.name, got.version, got.source, got.repository_id) == (pipeline, "app", 1, V1, "")
        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdatePipeline(pb.UpdatePipelineRequest(pipeline="app", source=BAD), timeout=10)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert ".buildit.kdl:2:21: error:" in str(refused.value.details()), refused.value.details()
        edited = stub.UpdatePipeline(pb.UpdatePipelineRequest(pipeline=pipeline, source=V2), timeout=10)
        assert (edited.changed, edited.pipeline.version, edited.pipeline.source) == (True, 2, V2)
        number = controller.trigger(pipeline)
        assert stage_names(controller.wait_run(pipeline, number)) == ["a", "b"]
        gone = stub.DeletePipeline(pb.DeletePipelineRequest(pipeline="app"), timeout=10)
        assert gone.runs_deleted == 2
        for call in (
            lambda: stub.GetPipeline(pb.GetPipelineRequest(pipeline="app"), timeout=10),
            lambda: stub.DeletePipeline(pb.DeletePipelineRequest(pipeline=pipeline), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as missing:
                call()
            assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    events = audit(controller)
    assert "pipeline.update app (version 2)" in events
    assert f"pipeline.delete app ({pipeline}, 2 run(s))" in events


def test_a_watched_repositorys_pipeline_is_changed_by_a_push_and_removed_with_its_repository(
    fleet: Controller, tmp_path: Path
) -> None:
    controller = fleet
    repo = make_repo(tmp_path / "watched", {".buildit.kdl": V1.replace('"app"', '"watched"')})
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(repo)})
    assert status == 201, body
    pipeline, repo_id = body["pipeline_id"], body["id"]
    status, body, _ = controller.request("PUT", f"/api/v1/pipelines/{pipeline}", {"config": V2})
    assert status == 409 and "push a commit" in body["detail"], body
    status, body, _ = controller.request("DELETE", f"/api/v1/pipelines/{pipeline}")
    assert status == 409 and f"DELETE /api/v1/repos/{repo_id}" in body["detail"], body
    with controller.channel() as channel:
        stub = pb_grpc.BuildItServiceStub(channel)
        for call in (
            lambda: stub.UpdatePipeline(pb.UpdatePipelineRequest(pipeline="watched", source=V2), timeout=10),
            lambda: stub.DeletePipeline(pb.DeletePipelineRequest(pipeline="watched"), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}")
    assert status == 200 and body["version"] == 1 and "first version" in body["config"], body
