"""Commit statuses sent to a real HTTP server on 127.0.0.1 standing in for GitHub, Gitea and GitLab.

The server records each request (method, path, headers, JSON body) and answers 201, or whatever
status a test asks for. Nothing here contacts a non-loopback address.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controller.forge.status import (
    BUILDIT_TO_FORGE,
    StatusReportError,
    StatusTarget,
    report_status,
    validate_target,
)

TOKEN = "ghp_SuperSecretToken1234567890"
SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
STATUSES = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "skipped",
    "timed_out",
    "error",
)

# What each forge must receive, written out here independently of the module's table.
EXPECTED_STATES = {
    "github": {
        "pending": "pending",
        "queued": "pending",
        "running": "pending",
        "succeeded": "success",
        "failed": "failure",
        "cancelled": "error",
        "skipped": "success",
        "timed_out": "failure",
        "error": "error",
    },
    "gitea": {
        "pending": "pending",
        "queued": "pending",
        "running": "pending",
        "succeeded": "success",
        "failed": "failure",
        "cancelled": "warning",
        "skipped": "success",
        "timed_out": "failure",
        "error": "error",
    },
    "gitlab": {
        "pending": "pending",
        "queued": "pending",
        "running": "running",
        "succeeded": "success",
        "failed": "failed",
        "cancelled": "canceled",
        "skipped": "skipped",
        "timed_out": "failed",
        "error": "failed",
    },
}
VALID_FORGE_STATES = {
    "github": {"pending", "success", "failure", "error"},
    "gitea": {"pending", "success", "failure", "error", "warning"},
    "gitlab": {"pending", "running", "success", "failed", "canceled", "skipped"},
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeForge:
    """The test server's state: requests seen, and how to answer the next ones."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    status: int = 201
    answer: bytes = b'{"id": 1, "state": "success"}'
    extra_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)


def _handler(forge: FakeForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            forge.requests.append(
                Recorded(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
            )
            if forge.delay_s:
                forge.release.wait(forge.delay_s)
            self.send_response(forge.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(forge.answer)))
            for name, value in forge.extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(forge.answer)

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; loopback requests must go straight to the test server."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    state = FakeForge(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on: bound by the OS, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- The exact requests -----------------------------------------------------------------------------


def test_github_request(forge: FakeForge) -> None:
    target = StatusTarget("github", forge.url, "octo-org/octo-repo", TOKEN)
    report_status(
        target,
        SHA,
        "succeeded",
        target_url="https://ci.example/runs/12",
        description="Run 12 passed in 3m",
        context="buildit/ci",
    )
    [request] = forge.requests
    assert request.method == "POST"
    assert request.path == f"/repos/octo-org/octo-repo/statuses/{SHA}"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["content-type"] == "application/json"
    assert "private-token" not in request.headers
    assert request.body == {
        "state": "success",
        "target_url": "https://ci.example/runs/12",
        "description": "Run 12 passed in 3m",
        "context": "buildit/ci",
    }


def test_gitea_request(forge: FakeForge) -> None:
    target = StatusTarget("gitea", f"{forge.url}/api/v1/", "gitea/webhooks", TOKEN)
    report_status(
        target, SHA, "failed", target_url="https://ci.example/runs/7", description="stage test failed"
    )
    [request] = forge.requests
    assert request.method == "POST"
    assert request.path == f"/api/v1/repos/gitea/webhooks/statuses/{SHA}"
    assert request.headers["authorization"] == f"token {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "state": "failure",
        "target_url": "https://ci.example/runs/7",
        "description": "stage test failed",
        "context": "buildit",
    }


def test_gitlab_request_with_project_path(forge: FakeForge) -> None:
    target = StatusTarget("gitlab", f"{forge.url}/api/v4", "group/sub group/project", TOKEN)
    report_status(target, SHA, "running", target_url="https://ci.example/runs/3", description="running")
    [request] = forge.requests
    assert request.method == "POST"
    assert request.path == f"/api/v4/projects/group%2Fsub%20group%2Fproject/statuses/{SHA}"
    assert request.headers["private-token"] == TOKEN
    assert "authorization" not in request.headers
    assert request.body == {
        "state": "running",
        "target_url": "https://ci.example/runs/3",
        "description": "running",
        "name": "buildit",
    }


def test_gitlab_request_with_project_id(forge: FakeForge) -> None:
    report_status(StatusTarget("gitlab", f"{forge.url}/api/v4", "15", TOKEN), SHA, "cancelled", context="ci")
    [request] = forge.requests
    assert request.path == f"/api/v4/projects/15/statuses/{SHA}"
    assert request.body == {"state": "canceled", "name": "ci"}


def test_empty_optional_fields_are_left_out(forge: FakeForge) -> None:
    report_status(StatusTarget("github", forge.url, "o/r", TOKEN), SHA, "pending")
    assert forge.requests[0].body == {"state": "pending", "context": "buildit"}


def test_description_cut_to_140_characters(forge: FakeForge) -> None:
    target = StatusTarget("gitea", forge.url, "o/r", TOKEN)
    report_status(target, SHA, "failed", description="x" * 140)
    report_status(target, SHA, "failed", description="é" * 300)
    assert forge.requests[0].body["description"] == "x" * 140
    cut = forge.requests[1].body["description"]
    assert len(cut) == 140 and cut == "é" * 139 + "…"


@pytest.mark.parametrize("kind", ["github", "gitea", "gitlab"])
@pytest.mark.parametrize("status", STATUSES)
def test_status_mapping(forge: FakeForge, kind: str, status: str) -> None:
    report_status(StatusTarget(kind, forge.url, "owner/name", TOKEN), SHA, status)
    [request] = forge.requests
    assert request.body["state"] == EXPECTED_STATES[kind][status]
    assert request.body["state"] in VALID_FORGE_STATES[kind]


def test_mapping_table_covers_every_status() -> None:
    assert {kind: dict(states) for kind, states in BUILDIT_TO_FORGE.items()} == EXPECTED_STATES


def test_any_2xx_is_success(forge: FakeForge) -> None:
    forge.status, forge.answer = 200, b"{}"
    report_status(StatusTarget("github", forge.url, "o/r", TOKEN), SHA, "running")
    assert len(forge.requests) == 1


# --- Errors ------------------------------------------------------------------------------------------------


def test_401_names_forge_status_repo_and_sha_but_not_the_token(forge: FakeForge) -> None:
    forge.status = 401
    # A server that echoes the credential back must not get it into the message either.
    forge.answer = json.dumps({"message": "Bad credentials", "seen": f"Bearer {TOKEN}"}).encode()
    with pytest.raises(StatusReportError) as caught:
        report_status(StatusTarget("github", forge.url, "octo-org/octo-repo", TOKEN), SHA, "failed")
    message = str(caught.value)
    assert TOKEN not in message and TOKEN not in repr(caught.value)
    assert "github" in message and "401" in message and "Bad credentials" in message
    assert "octo-org/octo-repo" in message and SHA in message
    assert caught.value.http_status == 401


def test_500_with_a_long_body_gives_a_short_snippet(forge: FakeForge) -> None:
    forge.status = 500
    forge.answer = b"<html>\n<body>" + b"Internal error " * 500 + b"</body></html>"
    with pytest.raises(StatusReportError) as caught:
        report_status(StatusTarget("gitlab", f"{forge.url}/api/v4", "group/project", TOKEN), SHA, "running")
    message = str(caught.value)
    assert "gitlab" in message and "500" in message and "group/project" in message
    assert "\n" not in message and len(message) < 400
    assert TOKEN not in message
    assert caught.value.http_status == 500


def test_redirect_is_not_followed(forge: FakeForge) -> None:
    forge.status = 302
    forge.extra_headers = {"Location": f"{forge.url}/elsewhere"}
    with pytest.raises(StatusReportError, match="302") as caught:
        report_status(StatusTarget("gitea", forge.url, "o/r", TOKEN), SHA, "succeeded")
    assert [request.path for request in forge.requests] == [f"/repos/o/r/statuses/{SHA}"]
    assert TOKEN not in str(caught.value)


def test_connection_refused_fails_fast() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(StatusReportError) as caught:
        report_status(StatusTarget("github", f"http://127.0.0.1:{port}", "o/r", TOKEN), SHA, "running")
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "github" in message and f"127.0.0.1:{port}" in message and "o/r" in message and SHA in message
    assert TOKEN not in message
    assert caught.value.http_status is None


def test_slow_forge_times_out(forge: FakeForge) -> None:
    forge.delay_s = 5
    started = time.monotonic()
    with pytest.raises(StatusReportError) as caught:
        report_status(StatusTarget("gitea", forge.url, "o/r", TOKEN), SHA, "running", timeout_s=0.3)
    assert time.monotonic() - started < 3
    assert "0.3s" in str(caught.value) and TOKEN not in str(caught.value)


# --- Input checked before any request ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sha", "status", "message"),
    [
        ("not-a-sha", "running", "is not a hex commit id"),
        ("../../../admin", "running", "is not a hex commit id"),
        (SHA, "exploded", "is not one of"),
    ],
)
def test_bad_sha_or_status(forge: FakeForge, sha: str, status: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        report_status(StatusTarget("github", forge.url, "o/r", TOKEN), sha, status)
    assert forge.requests == []


@pytest.mark.parametrize("token", ["", "abc\r\nX-Injected: 1", "tok\x00en"])
def test_bad_token_refused_without_echoing_it(forge: FakeForge, token: str) -> None:
    with pytest.raises(ValueError) as caught:
        report_status(StatusTarget("gitlab", forge.url, "15", token), SHA, "running")
    assert token == "" or token not in str(caught.value)
    assert forge.requests == []


def test_target_repr_hides_the_token() -> None:
    target = StatusTarget("github", "https://api.github.com", "o/r", TOKEN)
    assert TOKEN not in repr(target) and "o/r" in repr(target)


@pytest.mark.parametrize(
    ("kind", "api_url", "repo"),
    [
        ("github", "https://api.github.com", "octo-org/octo-repo"),
        ("gitea", "https://gitea.example/api/v1", "gitea/webhooks"),
        ("gitlab", "https://gitlab.example/api/v4", "42"),
        ("gitlab", "http://127.0.0.1:8080/api/v4/", "group/sub/project"),
    ],
)
def test_validate_target_accepts(kind: str, api_url: str, repo: str) -> None:
    validate_target(kind, api_url, repo)


@pytest.mark.parametrize(
    ("kind", "api_url", "repo", "message"),
    [
        (
            "bitbucket",
            "https://api.bitbucket.org",
            "o/r",
            "status kind 'bitbucket' is not one of github, gitea, gitlab",
        ),
        ("github", "ftp://api.github.com", "o/r", "must be an http\\(s\\) URL, e.g. https://api.github.com"),
        ("gitea", "gitea.example/api/v1", "o/r", "must be an http\\(s\\) URL"),
        ("gitlab", "https://", "42", "must be an http\\(s\\) URL"),
        ("github", "https://api.github.com?x=1", "o/r", "must not have a query"),
        ("github", "https://api.github.com", "", "status repo is empty; give owner/name"),
        ("gitlab", "https://gitlab.example/api/v4", "  ", "status repo is empty; give a project id"),
        ("github", "https://api.github.com", "just-a-name", "must be owner/name for github"),
        ("gitea", "https://gitea.example/api/v1", "a/b/c", "must be owner/name for gitea"),
        ("github", "https://api.github.com", "/name", "must be owner/name"),
    ],
)
def test_validate_target_refuses(kind: str, api_url: str, repo: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_target(kind, api_url, repo)
