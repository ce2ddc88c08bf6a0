"""Artifacts end to end: a real controller and agent processes on loopback, SQLite and PostgreSQL.

A stage's artifacts are uploaded over gRPC into the controller's content-addressed store, restored
into the workspace of the stage that needs it (possibly on another agent), and served by the REST API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for

pytestmark = pytest.mark.timeout(120)

BUILD_AND_TEST = """
pipeline "artifacts"
stage "build" { run "mkdir -p dist && echo hi > dist/a.txt && echo no > dist/b.log"; artifacts "dist/*.txt"; }
stage "test" needs="build" { run "cat dist/a.txt" "test ! -e dist/b.log"; }
"""


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    with controller_with_agents(tmp_path, database_url, env={"BUILDIT_ARTIFACT_MAX_BYTES": "1000"}) as fleet:
        yield fleet


def start_agents(controller: Controller, agents: list[Agent], tmp_path: Path, *names: str) -> None:
    for name in names:
        agents.append(Agent(tmp_path, controller, name))
    wait_for(
        lambda: sum(a["status"] == "online" for a in controller.agents()) >= len(agents), 30, "agents online"
    )


def test_artifacts_flow_from_stage_to_stage_and_to_the_api(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "one", "two")
    pipeline = controller.create_pipeline(BUILD_AND_TEST)
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    assert run["status"] == "succeeded", (run, controller.log(pipeline, number, "test"))
    build_log = controller.log(pipeline, number, "build")
    assert "uploaded artifact dist/a.txt (3 bytes)" in build_log
    test_log = controller.log(pipeline, number, "test").splitlines()
    assert test_log[0] == "restored 1 artifact file(s), 3 bytes, from build"
    assert "hi" in test_log

    base = f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts"
    status, body, _ = controller.request("GET", base)
    assert status == 200, body
    [artifact] = body["artifacts"]
    assert artifact["stage"] == "build" and artifact["path"] == "dist/a.txt"
    assert artifact["size"] == 3 and artifact["sha256"] == hashlib.sha256(b"hi\n").hexdigest()
    assert artifact["download_url"] == f"{base}/{artifact['id']}"
    assert artifact["created_at"]

    status, content, headers = controller.request("GET", artifact["download_url"])
    assert status == 200 and content == "hi\n"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == 'attachment; filename="a.txt"'
    # The content is stored once, under its address, in the controller's data dir.
    sha = artifact["sha256"]
    assert (tmp_path / "data" / "artifacts" / sha[:2] / sha).read_bytes() == b"hi\n"

    # A second run of the same pipeline stores no second copy.
    again = controller.trigger(pipeline)
    assert controller.wait_run(pipeline, again)["status"] == "succeeded"
    assert "already stored" in controller.log(pipeline, again, "build")
    assert len([p for p in (tmp_path / "data" / "artifacts").rglob("*") if p.is_file()]) == 1


def test_a_retried_attempt_replaces_the_artifacts_of_the_lost_one(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "first", "second")
    marker = tmp_path / "attempted"
    # Attempt 1 makes a.txt and 400 more files (a long upload, in path order); attempt 2 only b.txt.
    pipeline = controller.create_pipeline(
        'pipeline "retry"\n'
        f'stage "build" {{ run "if [ -e {marker} ]; then echo 2 > b.txt; mkdir many; else touch {marker}; '
        "echo 1 > a.txt; mkdir many; i=0; "
        'while [ $i -lt 400 ]; do echo $i > many/$i.txt; i=$((i+1)); done; fi"; '
        'artifacts "*.txt" "many"; }\n'
    )
    number = controller.trigger(pipeline)
    base = f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts"

    def first_uploads() -> bool:
        status, body, _ = controller.request("GET", base)
        return status == 200 and any(a["path"] == "a.txt" for a in body["artifacts"])

    wait_for(first_uploads, 60, "attempt 1 to upload a.txt")
    holder = controller.stage(pipeline, number, "build")["agent"]
    assert controller.stage(pipeline, number, "build")["status"] == "running"
    next(a for a in agents if a.name == holder).kill()  # mid-upload: its lease expires, the stage moves
    run = controller.wait_run(pipeline, number, timeout=60)
    stage = run["stages"][0]
    assert run["status"] == "succeeded" and stage["attempt"] == 2 and stage["agent"] != holder, run
    _, body, _ = controller.request("GET", base)
    assert [a["path"] for a in body["artifacts"]] == ["b.txt"]


def test_the_artifact_api_answers_unknown_things_with_clear_404s(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, _ = fleet
    pipeline = controller.create_pipeline(BUILD_AND_TEST)
    unknown = "00000000-0000-0000-0000-000000000000"
    status, body, _ = controller.request("GET", f"/api/v1/pipelines/{unknown}/runs/1/artifacts")
    assert status == 404 and body["detail"].startswith(f"pipeline {unknown} not found")
    status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/7/artifacts")
    assert status == 404 and body["detail"] == f"run 7 of pipeline {pipeline} not found"
    number = controller.trigger(pipeline)  # no agent: nothing runs, nothing is uploaded
    status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts")
    assert (status, body) == (200, {"artifacts": []})
    status, body, _ = controller.request(
        "GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts/{unknown}"
    )
    assert status == 404 and f"has no artifact {unknown}" in body["detail"]


def test_an_artifact_symlink_out_of_the_workspace_fails_the_stage(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "solo")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for artifacts")
    # `artifacts "../x"` is refused when the pipeline is loaded; a symlink can only be caught at run time.
    escaping = 'pipeline "bad"\nstage "s" { run "true"; artifacts "../x"; }\n'
    status, body, _ = controller.request("POST", "/api/v1/pipelines", {"config": escaping})
    assert status == 422, body
    pipeline = controller.create_pipeline(
        'pipeline "escape"\n'
        f'stage "leak" {{ run "ln -s {secret} out.txt"; artifacts "*.txt"; }}\n'
        'stage "after" needs="leak" { run "echo never"; }\n'
    )
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    stages = {s["name"]: s for s in run["stages"]}
    assert stages["leak"]["status"] == "error"
    assert stages["leak"]["message"] == (
        "artifacts: artifact 'out.txt' is a symlink pointing outside the workspace; refusing it"
    )
    assert stages["after"]["status"] == "skipped"
    status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts")
    assert body == {"artifacts": []}


def test_artifacts_over_the_limit_fail_the_stage_and_keep_nothing(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    start_agents(controller, agents, tmp_path, "solo")
    pipeline = controller.create_pipeline(
        'pipeline "big"\n'
        'stage "build" { run "head -c 600 /dev/zero > a.bin && head -c 700 /dev/urandom > b.bin"; '
        'artifacts "*.bin"; }\n'
        'stage "after" needs="build" { run "echo never"; }\n'
    )
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    stages = {s["name"]: s for s in run["stages"]}
    assert stages["build"]["status"] == "error", run
    message = "artifacts of stage 'build' exceed the limit of 1000 bytes (BUILDIT_ARTIFACT_MAX_BYTES)"
    assert stages["build"]["message"] == message
    assert controller.log(pipeline, number, "build").splitlines()[-1] == f"error: {message}"
    assert stages["after"]["status"] == "skipped"
    _, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/artifacts")
    assert body == {"artifacts": []}  # a.bin was accepted first, then dropped with the stage


def test_a_bad_limit_setting_is_a_clear_error(tmp_path: Path, database_url: str) -> None:
    controller = Controller(tmp_path, database_url, env={"BUILDIT_ARTIFACT_MAX_BYTES": "1GB"})
    with pytest.raises(AssertionError) as failed:
        controller.start()
    assert "BUILDIT_ARTIFACT_MAX_BYTES must be a positive whole number of bytes" in str(failed.value)
