"""Repository operations on a real controller with real Git repositories (SQLite and PostgreSQL):
rotating the webhook secret, the state of the newest pipeline file with its commit, and removing a
repository whose run is still going."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for
from tests.integration.triggers.gitrepos import commit, make_repo

GOOD = 'pipeline "app"\nstage "a" {{ run "echo {word}"; }}\n'
BROKEN = 'pipeline "app"\nstage "a" { run "echo broken" }\n'


def repo_view(controller: Controller, repo_id: str) -> dict[str, Any]:
    status, body, _ = controller.request("GET", f"/api/v1/repos/{repo_id}")
    assert status == 200, body
    return dict(body)


def handled(controller: Controller, repo_id: str, sha: str) -> dict[str, Any]:
    """The repository once the trigger of commit `sha` has been handled."""
    return dict(
        wait_for(
            lambda: (
                (r := repo_view(controller, repo_id))
                and any(t["sha"] == sha and t["status"] == "done" for t in r["triggers"])
                and r
            ),
            30,
            f"the trigger of {sha[:7]}",
        )
    )


def test_rotating_the_webhook_secret_retires_the_old_one_at_once(tmp_path: Path, database_url: str) -> None:
    with controller_with_agents(tmp_path, database_url) as (controller, _):
        repo = make_repo(tmp_path / "hooked", {".buildit.kdl": GOOD.format(word="hi")})
        status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(repo), "name": "hooked"})
        assert status == 201, body
        repo_id, old = body["id"], body["webhook_secret"]
        hook = f"/hooks/git/{repo_id}"

        def hook_with(secret: str) -> int:
            status, _, _ = controller.request(
                "POST", hook, raw=b"", headers={"Authorization": f"Bearer {secret}"}
            )
            return status

        assert hook_with(old) == 202
        status, body, _ = controller.request("POST", f"/api/v1/repos/{repo_id}/webhook-secret")
        assert status == 200 and body["id"] == repo_id, body
        new = body["webhook_secret"]
        assert new != old and len(new) >= 16
        assert (hook_with(old), hook_with(new)) == (401, 202)
        assert "webhook_secret" not in repo_view(controller, repo_id)
        status, events, _ = controller.request("GET", "/api/v1/audit")
        rotations = [e for e in events["events"] if e["action"] == "repository.rotate_webhook_secret"]
        assert [e["target"] for e in rotations] == [f"hooked ({repo_id})"]
        assert new not in str(events)
        status, body, _ = controller.request(
            "POST", "/api/v1/repos/00000000-0000-4000-8000-000000000000/webhook-secret"
        )
        assert status == 404, body
        # The new secret outlives a restart (it is stored, sealed).
        controller.stop()
        controller.start()
        assert (hook_with(old), hook_with(new)) == (401, 202)


def test_the_newest_pipeline_file_is_reported_with_its_commit_and_the_one_shown(
    tmp_path: Path, database_url: str
) -> None:
    with controller_with_agents(tmp_path, database_url) as (controller, _):
        repo = make_repo(tmp_path / "app", {".buildit.kdl": GOOD.format(word="one")})
        first = commit(repo, {"README": "x\n"}, "docs")
        status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(repo)})
        assert status == 201, body
        repo_id, pipeline = body["id"], body["pipeline_id"]
        state = repo_view(controller, repo_id)["pipeline_file"]
        assert (state["state"], state["branch"], state["sha"], state["shown_sha"]) == (
            "valid",
            "main",
            first,
            first,
        )
        assert (
            state["summary"]
            == f"the .buildit.kdl at {first[:7]} (newest on main) is valid; it is the file shown"
        )

        broken = commit(repo, {".buildit.kdl": BROKEN}, "break it")
        state = handled(controller, repo_id, broken)["pipeline_file"]
        assert (state["state"], state["sha"], state["shown_sha"]) == ("invalid", broken, first)
        assert state["summary"].startswith(
            f"the .buildit.kdl at {broken[:7]} (newest on main) is invalid: .buildit.kdl:2:31: error: "
        )
        assert state["summary"].endswith(f"; the file shown is the last valid one, from {first[:7]}")
        assert [(d["line"], d["col"]) for d in state["diagnostics"]] == [(2, 31)]
        status, shown, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}")
        assert (shown["config"], shown["config_sha"], shown["version"]) == (GOOD.format(word="one"), first, 1)

        fixed = commit(repo, {".buildit.kdl": GOOD.format(word="two")}, "fix it")
        state = handled(controller, repo_id, fixed)["pipeline_file"]
        assert (state["state"], state["sha"], state["shown_sha"]) == ("valid", fixed, fixed)
        status, history, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/versions")
        assert [(v["version"], v["sha"]) for v in history["versions"]] == [(2, fixed), (1, first)]

        gone = commit(repo, {}, "drop the file", remove=(".buildit.kdl",))
        state = handled(controller, repo_id, gone)["pipeline_file"]
        assert (state["state"], state["shown_sha"]) == ("missing", fixed)
        assert state["summary"] == (
            f"there is no .buildit.kdl at {gone[:7]} (newest on main): pushes run nothing; "
            f"the file shown is the last valid one, from {fixed[:7]}"
        )
        triggers = repo_view(controller, repo_id)["triggers"]
        became = {t["sha"]: (t["run_number"], t["outcome"]) for t in triggers}
        assert became[gone] == (None, "no .buildit.kdl at this commit")
        assert became[fixed][0] is not None and became[broken][0] is not None


def test_removing_a_repository_stops_its_running_stage_and_deletes_its_runs_and_logs(
    tmp_path: Path, database_url: str
) -> None:
    with controller_with_agents(tmp_path, database_url) as (controller, agents):
        agents.append(Agent(tmp_path, controller, "solo"))
        started = tmp_path / "started"
        slow = f'pipeline "slow"\nstage "a" {{ run "echo go; touch {started}; sleep 45"; }}\n'
        repo = make_repo(tmp_path / "slow", {".buildit.kdl": slow})
        status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(repo)})
        assert status == 201, body
        repo_id, pipeline = body["id"], body["pipeline_id"]
        status, run, _ = controller.request("POST", f"/api/v1/repos/{repo_id}/runs", {})
        assert status == 201, run
        wait_for(started.exists, 60, "the stage to start")
        logs = wait_for(
            lambda: sorted((controller.workdir / "data" / "logs").rglob(f"{run['id']}.*.log")), 30, "its log"
        )

        assert _shells_mentioning(str(started)), "the stage's shell should be running"
        status, body, _ = controller.request("DELETE", f"/api/v1/repos/{repo_id}")
        assert status == 204, body
        wait_for(lambda: not _shells_mentioning(str(started)), 20, "the stage's processes to end")
        assert not any(p.exists() for p in logs)
        assert not (controller.workdir / "data" / "mirrors" / f"{repo_id}.git").exists()
        status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{run['number']}")
        assert status == 404, body
        status, events, _ = controller.request("GET", "/api/v1/audit")
        targets = [e["target"] for e in events["events"] if e["action"] == "repository.unregister"]
        assert targets == [f"slow ({repo_id}, 1 run(s))"]


def _shells_mentioning(marker: str) -> list[int]:
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


def test_another_tenants_repository_is_not_found_and_unchanged(tmp_path: Path, database_url: str) -> None:
    with controller_with_agents(tmp_path, database_url) as (controller, _):
        status, body, _ = controller.request("POST", "/api/v1/tenants", {"slug": "blue"})
        assert status == 201, body
        blue = {"X-BuildIt-Tenant": "default/blue"}
        repo = make_repo(tmp_path / "blue-app", {".buildit.kdl": GOOD.format(word="blue")})
        status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(repo)}, headers=blue)
        assert status == 201, body
        repo_id, secret = body["id"], body["webhook_secret"]
        for method, path in (
            ("GET", f"/api/v1/repos/{repo_id}"),
            ("POST", f"/api/v1/repos/{repo_id}/webhook-secret"),
            ("DELETE", f"/api/v1/repos/{repo_id}"),
        ):
            status, body, _ = controller.request(method, path)  # acting in default/default
            assert status == 404, (method, path, body)
        status, _, _ = controller.request(
            "POST", f"/hooks/git/{repo_id}", raw=b"", headers={"Authorization": f"Bearer {secret}"}
        )
        assert status == 202  # its secret was not rotated
        status, body, _ = controller.request("GET", f"/api/v1/repos/{repo_id}", headers=blue)
        assert status == 200 and body["pipeline_file"]["state"] == "valid", body
