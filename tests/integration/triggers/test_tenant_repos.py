"""Watched repositories of any tenant, and who may make the controller fetch what: a real controller
and real agents as processes, real Git repositories served on 127.0.0.1 by git's own HTTP server.

Nothing here reaches beyond loopback: refused registrations are refused before any fetch (the
served repositories count their requests), and the failing ones fail against 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for
from tests.integration.triggers.gitrepos import GIT_ENV, GitHttpServer, commit, git, make_repo
from tests.support.credentials import issue_key

PIPELINE = 'pipeline "app"\nstage "build" { run "git rev-parse HEAD"; }\n'
PASSWORD = "a long enough password"
BLUE = {"X-BuildIt-Tenant": "default/blue"}
FINISHED = {"succeeded", "failed", "cancelled", "error", "timed_out", "skipped"}


def ok(result: tuple[int, Any, dict[str, str]], status: int = 200) -> Any:
    code, body, _ = result
    assert code == status, body
    return body


def user_key(controller: Controller, name: str, grants: dict[str, str]) -> str:
    """A member `name` with `grants` ({tenant path: role}) and an API key of theirs."""
    ok(controller.request("POST", "/api/v1/users", {"username": name, "password": PASSWORD}), 201)
    for tenant, role in grants.items():
        headers = {"X-BuildIt-Tenant": tenant}
        ok(controller.request("PUT", "/api/v1/grants", {"user": name, "role": role}, headers=headers))
    return issue_key(controller.base_url, name, PASSWORD)


def online(controller: Controller, headers: dict[str, str]) -> set[str]:
    agents = ok(controller.request("GET", "/api/v1/agents", headers=headers))["agents"]
    return {a["name"] for a in agents if a["status"] == "online"}


def served_repo(tmp_path: Path) -> tuple[Path, Path, GitHttpServer]:
    """A working copy, its bare clone `app.git`, and git's HTTP server for the clone."""
    work = make_repo(tmp_path / "src", {".buildit.kdl": PIPELINE})
    root = tmp_path / "served"
    root.mkdir()
    bare = root / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], env=GIT_ENV, check=True)
    return work, bare, GitHttpServer(root)


def push(work: Path, bare: Path, message: str) -> str:
    sha = commit(work, {"change.txt": message}, message)
    git(work, "push", "-q", str(bare), "main")
    return sha


@pytest.fixture
def blue_fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    """A controller with tenant blue, one agent enrolled for blue and one for default only."""
    with controller_with_agents(tmp_path, database_url) as (controller, agents):
        ok(controller.request("POST", "/api/v1/tenants", {"slug": "blue"}), 201)
        blue = ok(
            controller.request("POST", "/api/v1/agent-tokens", {"name": "blue-pool"}, headers=BLUE), 201
        )
        red = ok(controller.request("POST", "/api/v1/agent-tokens", {"name": "default-pool"}), 201)
        assert not blue["org_wide"] and not red["org_wide"]
        agents.append(Agent(tmp_path, controller, "blue-worker", 2, registration_token=blue["token"]))
        agents.append(Agent(tmp_path, controller, "default-worker", 2, registration_token=red["token"]))
        wait_for(lambda: online(controller, BLUE) == {"blue-worker"}, 30, "the blue agent online")
        wait_for(lambda: online(controller, {}) == {"default-worker"}, 30, "the default agent online")
        yield controller, agents


def test_a_repository_of_another_tenant_runs_there_on_that_tenants_agents_only(
    blue_fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, _ = blue_fleet
    bea = user_key(controller, "bea", {"default/blue": "viewer"})
    vera = user_key(controller, "vera", {"default/default": "viewer"})
    work, bare, server = served_repo(tmp_path)
    try:
        url = f"{server.url}/app.git"
        # Polled once a day only: what runs here is what the webhooks asked for.
        repo = ok(
            controller.request("POST", "/api/v1/repos", {"url": url, "poll_interval_s": 86400}, headers=BLUE),
            201,
        )
        pipeline, secret = repo["pipeline_id"], repo["webhook_secret"]

        def blue_runs() -> list[dict[str, Any]]:
            return list(
                ok(controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs", headers=BLUE))["runs"]
            )

        def finished(number: int) -> dict[str, Any]:
            def done() -> dict[str, Any] | None:
                run = ok(
                    controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}", headers=BLUE)
                )
                return dict(run) if run["status"] in FINISHED else None

            return dict(wait_for(done, 60, f"run {number} to finish"))

        # The generic webhook of a blue repository.
        first = push(work, bare, "first")
        hook = {"ref": "refs/heads/main", "after": first}
        bearer = {"Authorization": f"Bearer {secret}"}
        ok(controller.request("POST", f"/hooks/git/{repo['id']}", hook, key="", headers=bearer), 202)
        wait_for(lambda: len(blue_runs()) == 1, 30, "the first run")
        # GitHub's, which finds the repository by its clone URL among every tenant's.
        second = push(work, bare, "second")
        payload = json.dumps(
            {"ref": "refs/heads/main", "after": second, "repository": {"clone_url": url}}
        ).encode()
        signature = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature}"}
        ok(controller.request("POST", "/hooks/github", raw=payload, key="", headers=headers), 202)
        wait_for(lambda: len(blue_runs()) == 2, 30, "the second run")
        # A manual run in blue, through the repository.
        ok(controller.request("POST", f"/api/v1/repos/{repo['id']}/runs", {}, headers=BLUE), 201)

        for number, sha in ((1, first), (2, second), (3, second)):
            run = finished(number)
            assert (run["status"], run["sha"]) == ("succeeded", sha), run
            assert [s["agent"] for s in run["stages"]] == ["blue-worker"], run  # never default-worker
            log = ok(
                controller.request(
                    "GET", f"/api/v1/pipelines/{pipeline}/runs/{number}/stages/build/log", headers=BLUE
                )
            )
            assert sha in log  # the blue agent fetched the commit from the mirror

        # A viewer of blue sees it all; default-tenant keys see nothing of it (404, as if absent).
        assert [r["name"] for r in ok(controller.request("GET", "/api/v1/repos", key=bea))["repos"]] == [
            "app"
        ]
        ok(controller.request("GET", f"/api/v1/repos/{repo['id']}", key=bea))
        ok(controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/1", key=bea))
        assert ok(controller.request("GET", "/api/v1/repos", key=vera))["repos"] == []
        assert ok(controller.request("GET", "/api/v1/repos"))["repos"] == []
        for key in (vera, None):
            assert controller.request("GET", f"/api/v1/repos/{repo['id']}", key=key)[0] == 404
            assert controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/1", key=key)[0] == 404
        assert controller.request("POST", f"/api/v1/repos/{repo['id']}/runs", {})[0] == 404
        for target in ("app", repo["id"]):
            assert controller.request("POST", "/api/v1/runs", {"target": target})[0] == 404
        assert controller.request("DELETE", f"/api/v1/repos/{repo['id']}")[0] == 404
        assert len(blue_runs()) == 3  # none of that touched blue
        assert controller.request("DELETE", f"/api/v1/repos/{repo['id']}", headers=BLUE)[0] == 204
        status, audit, _ = controller.request("GET", "/api/v1/audit?limit=500", headers=BLUE)
        assert status == 200, audit
        actions = [e["action"] for e in audit["events"] if repo["id"] in e["target"]]
        assert actions == ["repository.unregister", "repository.register"]  # newest first; the 404 is not one
    finally:
        server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Unauthorized(BaseHTTPRequestHandler):
    """A Git host that wants credentials (HTTP 401) for everything."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_who_may_register_what_and_a_failed_fetch_tells_nothing(tmp_path: Path) -> None:
    controller = Controller(
        tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env={"BUILDIT_REPO_HOSTS": "127.0.0.1"}
    ).start()
    _, _, server = served_repo(tmp_path)
    denying = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=denying.serve_forever, daemon=True).start()
    try:
        maintainer = user_key(controller, "max", {"default/default": "maintainer"})

        def register(url: str, key: str | None = None) -> tuple[int, str]:
            status, body, _ = controller.request("POST", "/api/v1/repos", {"url": url}, key=key)
            return status, body["detail"] if isinstance(body, dict) and "detail" in body else str(body)

        # Paths on the controller's machine: refused before looking, so an existing repository and
        # a path that does not exist answer exactly alike.
        on_disk = make_repo(tmp_path / "on-disk", {".buildit.kdl": PIPELINE})
        answers = {register(str(on_disk), maintainer), register(str(tmp_path / "nowhere"), maintainer)}
        [(status, detail)] = answers
        assert status == 403 and "organization owner or admin" in detail
        assert register(f"file://{on_disk}", maintainer) == (status, detail)
        # Plaintext URLs, and hosts outside BUILDIT_REPO_HOSTS: refused before any fetch.
        port = server.url.rsplit(":", 1)[1]
        status, detail = register(f"{server.url}/app.git", maintainer)
        assert status == 403 and "unencrypted" in detail
        status, detail = register(f"https://localhost:{port}/app.git", maintainer)
        assert status == 403 and "BUILDIT_REPO_HOSTS: 127.0.0.1" in detail
        assert server.requests == 0

        # A fetch that fails says one thing whatever the cause, to a maintainer on an allowed host
        # and to an organization owner alike.
        closed = _closed_port()
        neutral = "could not fetch {}: check the URL and credentials"
        url = f"https://127.0.0.1:{closed}/x.git"
        assert register(url, maintainer) == (400, neutral.format(url))
        unreachable = f"http://bob:pw-s3cr3t@127.0.0.1:{closed}/x.git"
        assert register(unreachable) == (400, neutral.format(f"http://***@127.0.0.1:{closed}/x.git"))
        missing = f"{server.url}/nope.git"
        assert register(missing) == (400, neutral.format(missing))
        denied = f"http://127.0.0.1:{denying.server_address[1]}/x.git"
        assert register(denied) == (400, neutral.format(denied))

        # The cause is in the controller's log, for its operator, without the password (the log
        # is read from the process's pipe by a thread: it may trail the answers by a moment).
        def logged() -> str | None:
            output = controller.proc.output if controller.proc else ""
            causes = ("Connection refused", "HTTP 401", "HTTP 404")
            return output if all(cause in output for cause in causes) else None

        output = wait_for(logged, 10, "the fetch failures' causes in the controller log")
        assert "pw-s3cr3t" not in output
        assert ok(controller.request("GET", "/api/v1/repos"))["repos"] == []  # nothing was kept

        # An organization owner may register what maintainers may not.
        assert register(f"{server.url}/app.git")[0] == 201
        assert register(str(on_disk))[0] == 201
    finally:
        denying.shutdown()
        denying.server_close()
        server.close()
        controller.stop()
