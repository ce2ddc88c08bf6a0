"""Git-native triggers end to end: real repositories, a real controller and agent as processes.

A commit lands in a watched repository (made with the git CLI in the test) and a run appears,
built by the agent from the controller's mirror at exactly that commit. Remote repositories are
served over loopback smart-HTTP by `git http-backend` (git's own server) in this test process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for
from tests.integration.triggers.gitrepos import GIT_ENV, GitHttpServer, commit, git, make_repo

PIPELINE = """pipeline "app"
stage "build" {
  run "git rev-parse HEAD > built-from.txt" "cat built-from.txt" "echo msg=${git.message}"
  artifacts "built-from.txt"
}
stage "check" needs="build" { run "cat built-from.txt"; }
"""


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    with controller_with_agents(tmp_path, database_url) as fleet:
        yield fleet


def add_agent(controller: Controller, agents: list[Agent], tmp_path: Path, name: str = "worker") -> None:
    agents.append(Agent(tmp_path, controller, name, capacity=2))
    wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")


def register(controller: Controller, url: str, **extra: Any) -> dict[str, Any]:
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": url, **extra})
    assert status == 201, body
    return dict(body)


def runs(controller: Controller, pipeline_id: str) -> list[dict[str, Any]]:
    status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline_id}/runs")
    assert status == 200, body
    return list(body["runs"])


def wait_runs(
    controller: Controller, pipeline_id: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    return list(
        wait_for(
            lambda: (r := runs(controller, pipeline_id)) and len(r) >= count and r, timeout, f"{count} run(s)"
        )
    )


def repo_state(controller: Controller, repo_id: str) -> dict[str, Any]:
    status, body, _ = controller.request("GET", f"/api/v1/repos/{repo_id}")
    assert status == 200, body
    return dict(body)


def test_a_commit_to_a_watched_repository_runs_its_pipeline_at_that_commit(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    add_agent(controller, agents, tmp_path)
    work = make_repo(tmp_path / "app")
    repo = register(controller, str(work))
    assert repo["kind"] == "local" and repo["status"] == "ok" and repo["branches"] == []
    assert len(repo["webhook_secret"]) >= 16
    listed = controller.request("GET", "/api/v1/repos")[1]["repos"]
    assert [r["name"] for r in listed] == ["app"] and "webhook_secret" not in listed[0]  # shown once only
    assert runs(controller, repo["pipeline_id"]) == []  # registering builds nothing

    sha = commit(work, {".buildit.kdl": PIPELINE}, "add the pipeline; $(touch /tmp/pwned)")
    [run] = wait_runs(controller, repo["pipeline_id"], 1)
    assert (run["sha"], run["branch"], run["trigger"]) == (sha, "main", "watch")
    assert run["author"] == "Ada Lovelace <ada@example.com>"
    done = controller.wait_run(repo["pipeline_id"], run["number"])
    assert done["status"] == "succeeded", done
    build_log = controller.log(repo["pipeline_id"], run["number"], "build")
    assert f"\n{sha}\n" in build_log  # the workspace is a checkout of exactly that commit
    assert "msg=add the pipeline; $(touch /tmp/pwned)" in build_log
    assert controller.log(repo["pipeline_id"], run["number"], "check").endswith(
        f"{sha}\n"
    )  # artifact via needs

    # A commit without the file: no run, and the repository says why.
    commit(work, {}, "drop the pipeline", remove=(".buildit.kdl",))
    wait_for(
        lambda: any(
            "no .buildit.kdl" in t["outcome"] for t in repo_state(controller, repo["id"])["triggers"]
        ),
        15,
        "the no-pipeline trigger outcome",
    )
    assert len(runs(controller, repo["pipeline_id"])) == 1

    # A broken file: a run in `error` showing where.
    commit(work, {".buildit.kdl": 'pipeline "app"\nstage "x" {\n  rnu "true"\n}\n'}, "typo")
    [broken, _] = wait_runs(controller, repo["pipeline_id"], 2)
    assert broken["status"] == "error", broken
    detail = controller.run(repo["pipeline_id"], broken["number"])
    assert ".buildit.kdl:3:3" in detail["error"] and "run" in detail["error"], detail["error"]


def test_an_agent_builds_the_exact_commit_after_the_branch_was_force_pushed(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    work = make_repo(tmp_path / "app", {".buildit.kdl": PIPELINE})
    repo = register(controller, str(work))
    first = commit(work, {"a.txt": "a"}, "first")
    [run] = wait_runs(controller, repo["pipeline_id"], 1)
    assert run["sha"] == first and run["status"] == "queued"  # no agent yet
    # Rewrite history: `first` is no longer on any branch.
    git(work, "reset", "-q", "--hard", "HEAD~1")
    second = commit(work, {"b.txt": "b"}, "second")
    wait_runs(controller, repo["pipeline_id"], 2)
    add_agent(controller, agents, tmp_path)
    done = controller.wait_run(repo["pipeline_id"], run["number"])
    assert done["status"] == "succeeded", done
    assert f"\n{first}\n" in controller.log(repo["pipeline_id"], run["number"], "build")
    newest = runs(controller, repo["pipeline_id"])[0]
    assert newest["sha"] == second


def test_several_commits_in_one_push_run_the_newest_unless_asked_for_each(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, _ = fleet
    origin = make_repo(tmp_path / "origin.git-src", {".buildit.kdl": PIPELINE})
    bare = tmp_path / "shared.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(bare)], env=GIT_ENV, check=True)
    newest_only = register(controller, str(bare), name="newest")
    each = register(controller, str(bare), name="each", run_each_commit=True)
    shas = []
    for i in range(3):
        shas.append(commit(origin, {"n.txt": str(i)}, f"change {i}"))
    git(origin, "push", "-q", str(bare), "main")  # one push, three commits
    [only] = wait_runs(controller, newest_only["pipeline_id"], 1)
    assert only["sha"] == shas[-1]
    all_runs = wait_runs(controller, each["pipeline_id"], 3)
    assert [r["sha"] for r in reversed(all_runs)] == shas  # oldest first, each once
    time.sleep(1)
    assert len(runs(controller, newest_only["pipeline_id"])) == 1  # never twice by accident


def test_a_remote_repository_is_polled_and_a_signed_webhook_fetches_it_at_once(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    add_agent(controller, agents, tmp_path)
    work = make_repo(tmp_path / "src", {".buildit.kdl": PIPELINE})
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(served / "app.git")], env=GIT_ENV, check=True
    )
    server = GitHttpServer(served)
    try:
        url = f"{server.url}/app.git"
        repo = register(controller, url, poll_interval_s=5)
        assert repo["kind"] == "remote"

        # Polled: a push shows up within one interval.
        pushed = commit(work, {"x": "1"}, "polled change")
        git(work, "push", "-q", str(served / "app.git"), "main")
        [run] = wait_runs(controller, repo["pipeline_id"], 1, timeout=20)
        assert (run["sha"], run["trigger"]) == (pushed, "poll")
        assert controller.wait_run(repo["pipeline_id"], run["number"])["status"] == "succeeded"

        # A GitHub-style webhook: unsigned and forged ones change nothing; a signed one fetches now.
        hooked = commit(work, {"x": "2"}, "hooked change")
        git(work, "push", "-q", str(served / "app.git"), "main")
        payload = json.dumps(
            {"ref": "refs/heads/main", "after": hooked, "repository": {"clone_url": url, "html_url": url}}
        ).encode()
        headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
        status, body, _ = controller.request("POST", "/hooks/github", raw=payload, headers=headers)
        assert status == 401, body
        forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
        status, body, _ = controller.request("POST", "/hooks/github", raw=payload, headers=forged)
        assert status == 401, body
        signature = hmac.new(repo["webhook_secret"].encode(), payload, hashlib.sha256).hexdigest()
        signed = {**headers, "X-Hub-Signature-256": f"sha256={signature}"}
        started = time.monotonic()
        status, body, _ = controller.request("POST", "/hooks/github", raw=payload, headers=signed)
        assert status == 202, body
        newest = wait_runs(controller, repo["pipeline_id"], 2, timeout=4)[0]
        assert (newest["sha"], newest["trigger"]) == (hooked, "webhook")
        assert time.monotonic() - started < 4  # well before the next poll

        # The generic hook with what a post-receive hook knows (branch and new head): that commit
        # is fetched in one request and runs. A body that is not such a notification is refused.
        bearer = {"Authorization": f"Bearer {repo['webhook_secret']}", "Content-Type": "application/json"}
        told = commit(work, {"x": "3"}, "told change")
        git(work, "push", "-q", str(served / "app.git"), "main")
        posts_before = server.methods.count("POST")
        note = json.dumps({"ref": "refs/heads/main", "after": told}).encode()
        status, body, _ = controller.request("POST", f"/hooks/git/{repo['id']}", raw=note, headers=bearer)
        assert status == 202, body
        newest = wait_runs(controller, repo["pipeline_id"], 3, timeout=4)[0]
        assert (newest["sha"], newest["trigger"]) == (told, "webhook")
        assert controller.wait_run(repo["pipeline_id"], newest["number"])["status"] == "succeeded"
        # One fetch request, no ref advertisement first (agents fetch from the controller's mirror).
        assert server.methods.count("POST") - posts_before == 1, " ".join(server.methods)
        for bad in (b"{", b"[]", b'{"ref": "refs/heads/main", "after": "nope"}'):
            status, body, _ = controller.request("POST", f"/hooks/git/{repo['id']}", raw=bad, headers=bearer)
            assert status == 400 and "not a push notification" in body["detail"], (bad, body)

        # Unknown repositories and bad generic-hook tokens.
        other = json.dumps(
            {
                "ref": "refs/heads/main",
                "after": hooked,
                "repository": {"clone_url": "https://example.invalid/x.git"},
            }
        ).encode()
        sig = hmac.new(b"whatever", other, hashlib.sha256).hexdigest()
        status, _, _ = controller.request(
            "POST", "/hooks/github", raw=other, headers={**headers, "X-Hub-Signature-256": f"sha256={sig}"}
        )
        assert status == 404
        status, _, _ = controller.request(
            "POST", f"/hooks/git/{repo['id']}", raw=b"", headers={"Authorization": "Bearer nope"}
        )
        assert status == 401
        status, _, _ = controller.request(
            "POST",
            f"/hooks/git/{repo['id']}",
            raw=b"",
            headers={"Authorization": f"Bearer {repo['webhook_secret']}"},
        )
        assert status == 202

    finally:
        server.close()


def test_bad_registrations_are_refused_with_the_reason_and_store_nothing(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, _ = fleet
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(plain): "not a git repository",
        "ftp://example.com/x.git": "ftp",
        "http://127.0.0.1:9/nothing.git": "127.0.0.1:9",
        "https://user:hunter2@127.0.0.1:9/x.git": "***",
    }
    for url, expected in cases.items():
        status, body, _ = controller.request("POST", "/api/v1/repos", {"url": url})
        assert status == 400, (url, body)
        assert expected.lower() in body["detail"].lower(), (url, body["detail"])
        assert "hunter2" not in json.dumps(body)
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(plain), "poll_interval_s": 0})
    assert status == 400 and "poll_interval_s" in body["detail"]
    assert controller.request("GET", "/api/v1/repos")[1]["repos"] == []
    status, body, _ = controller.request("GET", "/api/v1/repos/00000000-0000-0000-0000-000000000000")
    assert status == 404


def test_a_commit_made_while_the_controller_was_down_runs_after_restart(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    work = make_repo(tmp_path / "app", {".buildit.kdl": PIPELINE})
    repo = register(controller, str(work))
    controller.kill()
    missed = commit(work, {"late": "1"}, "pushed while the controller was down")
    controller.start()
    [run] = wait_runs(controller, repo["pipeline_id"], 1)
    assert run["sha"] == missed and run["trigger"] == "start"
    add_agent(controller, agents, tmp_path)
    assert controller.wait_run(repo["pipeline_id"], run["number"])["status"] == "succeeded"


def test_manual_trigger_by_branch_and_sha(fleet: tuple[Controller, list[Agent]], tmp_path: Path) -> None:
    controller, _ = fleet
    work = make_repo(tmp_path / "app", {".buildit.kdl": PIPELINE})
    first = git(work, "rev-parse", "HEAD")
    repo = register(controller, str(work))
    status, run, _ = controller.request("POST", f"/api/v1/repos/{repo['id']}/runs", {})
    assert status == 201, run
    assert (run["sha"], run["branch"], run["trigger"]) == (first, "main", "api")
    status, body, _ = controller.request("POST", f"/api/v1/repos/{repo['id']}/runs", {"branch": "nope"})
    assert status == 404 and "nope" in body["detail"]
    status, body, _ = controller.request("POST", f"/api/v1/repos/{repo['id']}/runs", {"sha": "f" * 40})
    assert status == 404 and "f" * 40 in body["detail"]
    status, body, _ = controller.request("POST", f"/api/v1/repos/{repo['id']}/runs", {"sha": "xyz"})
    assert status == 400
    # The repository's pipeline triggered through the pipelines API runs the commit the same way.
    status, again, _ = controller.request(
        "POST", f"/api/v1/pipelines/{repo['pipeline_id']}/runs", {"branch": "main"}
    )
    assert status == 201, again
    assert (again["sha"], again["number"]) == (first, run["number"] + 1)
    status, body, _ = controller.request(
        "POST", f"/api/v1/pipelines/{repo['pipeline_id']}/runs", {"branch": "nope"}
    )
    assert status == 404 and "nope" in body["detail"]


class _StatusRecorder:
    """A forge's commit-status API on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.posts.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(201)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_run_statuses_are_reported_to_the_forge(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    add_agent(controller, agents, tmp_path)
    recorder = _StatusRecorder()
    try:
        work = make_repo(tmp_path / "app", {".buildit.kdl": PIPELINE})
        status = {
            "kind": "gitea",
            "api_url": f"{recorder.url}/api/v1",
            "repo": "team/app",
            "token": "s3cr3t-tok",
        }
        repo = register(controller, str(work), commit_status=status)
        assert repo["commit_status"] == {
            "kind": "gitea",
            "api_url": f"{recorder.url}/api/v1",
            "repo": "team/app",
        }
        sha = commit(work, {"x": "1"}, "reported")
        [run] = wait_runs(controller, repo["pipeline_id"], 1)
        controller.wait_run(repo["pipeline_id"], run["number"])
        wait_for(lambda: any(p[2]["state"] == "success" for p in recorder.posts), 15, "the success status")
        paths = {p[0] for p in recorder.posts}
        assert paths == {f"/api/v1/repos/team/app/statuses/{sha}"}
        states = [p[2]["state"] for p in recorder.posts]
        assert states[0] == "pending" and states[-1] == "success", states
        assert all(p[1].get("Authorization") == "token s3cr3t-tok" for p in recorder.posts)
        assert recorder.posts[-1][2]["target_url"].endswith(f"/runs/{run['number']}")
        assert "s3cr3t-tok" not in json.dumps(repo_state(controller, repo["id"]))
    finally:
        recorder.close()
