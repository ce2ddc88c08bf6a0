"""Re-running a run of a watched repository (real controller, agent and repository, through REST):
the re-run builds the same commit with the same `.buildit.kdl`, even after the branch and its
pipeline file moved on and the controller restarted.
"""

from __future__ import annotations

from pathlib import Path

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Agent, Controller
from tests.integration.triggers.gitrepos import commit, make_repo
from tests.integration.triggers.test_git_triggers import add_agent, fleet, register, wait_runs

__all__ = ["fleet"]  # the fixture, shared with test_git_triggers

FIRST = """pipeline "app"
stage "build" { run "git rev-parse HEAD" "echo first file"; }
stage "check" needs="build" { run "echo checked"; }
"""
SECOND = 'pipeline "app"\nstage "other" { run "echo second file"; }\n'


def test_a_rerun_builds_the_same_commit_with_the_same_pipeline_file(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    add_agent(controller, agents, tmp_path)
    work = make_repo(tmp_path / "app")
    repo = register(controller, str(work))
    pipeline = repo["pipeline_id"]
    first_sha = commit(work, {".buildit.kdl": FIRST}, "first")
    [first] = wait_runs(controller, pipeline, 1)
    assert controller.wait_run(pipeline, first["number"])["status"] == "succeeded"
    second_sha = commit(work, {".buildit.kdl": SECOND}, "second")
    runs = wait_runs(controller, pipeline, 2)
    second = next(r for r in runs if r["sha"] == second_sha)
    assert controller.wait_run(pipeline, second["number"])["status"] == "succeeded"

    controller.stop()
    controller.start()
    status, body, _ = controller.request("POST", f"/api/v1/pipelines/{pipeline}/runs/{first['number']}/rerun")
    assert status == 201, body
    assert body["number"] == second["number"] + 1 and body["trigger"] == "rerun"
    assert (body["sha"], body["branch"]) == (first_sha, "main")
    assert (body["commit_message"], body["author"]) == (first["commit_message"], first["author"])
    assert [s["name"] for s in body["stages"]] == ["build", "check"]  # the first file, not the branch's
    rerun = controller.wait_run(pipeline, body["number"])
    assert rerun["status"] == "succeeded", rerun
    lines = controller.log(pipeline, body["number"], "build").splitlines()
    assert lines[-4:] == ["$ git rev-parse HEAD", first_sha, "$ echo first file", "first file"]

    # Integrations see how each run started: a commit seen by the watcher is a push.
    channel = controller.channel()
    try:
        api = pb_grpc.BuildItServiceStub(channel)
        triggers = [
            api.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run.trigger
            for run_id in (first["id"], rerun["id"])
        ]
    finally:
        channel.close()
    assert triggers == [pb.RUN_TRIGGER_PUSH, pb.RUN_TRIGGER_RERUN]
