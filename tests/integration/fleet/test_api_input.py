"""Bad input on every REST endpoint of a real `buildit controller` process, on SQLite and PostgreSQL.

Every refusal must be a 4xx whose JSON body's `detail` says what to fix, and must change nothing:
the pipelines and runs listed before and after the request are identical (including each pipeline's
run counter, so a refused trigger that burned a run number is caught too).

Each test starts one controller and checks many requests; `Checks` collects every failing request so
one run shows all of them, not just the first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from controller import __version__
from tests.integration.fleet.harness import Controller, wait_for

VALID = 'pipeline "valid"\nstage "build" { run "echo build"; }\nstage "test" needs="build" { run "true"; }\n'
ONE_LINE_PITFALL = 'pipeline "pitfall"\nstage "a" { run "x" }\n'
UNKNOWN = "00000000-0000-4000-8000-000000000000"
MALFORMED_IDS = ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g", "%00"]
Words = tuple[str | tuple[str, ...], ...]


@pytest.fixture
def controller(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    controller = Controller(tmp_path, database_url).start()
    try:
        yield controller
    finally:
        controller.stop()


def state(controller: Controller) -> dict[str, Any]:
    """Everything a bad request could have changed, as the API shows it."""
    status, listing, _ = controller.request("GET", "/api/v1/pipelines")
    assert status == 200, listing
    out: dict[str, Any] = {"pipelines": listing}
    for pipeline in listing["pipelines"]:
        pid = pipeline["id"]
        _, detail, _ = controller.request("GET", f"/api/v1/pipelines/{pid}")
        _, runs, _ = controller.request("GET", f"/api/v1/pipelines/{pid}/runs?limit=200")
        out[pid] = {"pipeline": detail, "runs": runs}
    return out


class Checks:
    """Send bad requests; record every one that is not refused cleanly; fail once at the end."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.failures: list[str] = []

    def refused(
        self,
        method: str,
        path: str,
        status: int | set[int],
        words: Words = (),
        *,
        body: Any = None,
        raw: bytes | None = None,
        label: str = "",
    ) -> dict[str, Any]:
        """Expect a 4xx `status` whose detail contains every word (a tuple = any one of them)."""
        allowed = {status} if isinstance(status, int) else status
        before = state(self.controller)
        got, payload, headers = self.controller.request(method, path, body=body, raw=raw)
        after = state(self.controller)
        what = f"{method} {path[:90]}{f' [{label}]' if label else ''}"
        problems: list[str] = []
        if got not in allowed:
            problems.append(f"status {got}, expected {sorted(allowed)}")
        if not isinstance(payload, dict):
            problems.append(f"body is not a JSON object ({headers.get('content-type')})")
            payload = {}
        detail = payload.get("detail")
        if not isinstance(detail, str) or not detail.strip():
            problems.append("no 'detail' message")
            detail = ""
        elif payload.get("status_code") != got:
            problems.append(f"status_code {payload.get('status_code')} != HTTP status {got}")
        for word in words:
            options = (word,) if isinstance(word, str) else word
            if not any(option.lower() in detail.lower() for option in options):
                problems.append(f"detail does not mention {' or '.join(repr(o) for o in options)}")
        if before != after:
            problems.append("the request changed stored state")
        if problems:
            self.failures.append(f"{what}: {'; '.join(problems)} -- got {got} {json.dumps(payload)[:300]}")
        return payload

    def verify(self) -> None:
        assert not self.failures, f"{len(self.failures)} bad request(s) not refused cleanly:\n" + "\n".join(
            self.failures
        )


def make_run(controller: Controller) -> tuple[str, int]:
    """A pipeline with one run that stays queued (no agent is connected).

    Returned once the controller has said why it waits (a second after it was queued): until
    then that explanation would show up as a change made by whichever bad request came next.
    """
    pipeline = controller.create_pipeline(VALID)
    number = controller.trigger(pipeline)
    wait_for(
        lambda: controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}")[1]["waiting_reason"],
        30,
        "the queued run's waiting reason",
    )
    return pipeline, number


# --- pipelines -------------------------------------------------------------------------------------


def test_malformed_and_mistyped_bodies_are_refused_with_what_to_fix(controller: Controller) -> None:
    pipeline, _ = make_run(controller)
    checks = Checks(controller)
    create = "/api/v1/pipelines"
    trigger = f"/api/v1/pipelines/{pipeline}/runs"
    for path in (create, trigger):
        checks.refused("POST", path, 400, ("malformed", "JSON"), raw=b'{"config": ', label="truncated")
        checks.refused("POST", path, 400, ("malformed", "JSON"), raw=b"{not json}", label="garbage")
        checks.refused("POST", path, 400, ("malformed", "JSON"), raw=b"\xff\xfe\x00", label="binary")
        for value in ([1, 2], "a string", 42, None, True):
            raw = json.dumps(value).encode()
            checks.refused("POST", path, 400, ("object",), raw=raw, label=f"JSON {raw.decode()}")
    checks.refused("POST", create, 400, ("config",), raw=b"", label="empty body")
    checks.refused("POST", create, 400, ("config",), body={}, label="missing config")
    checks.refused("POST", create, 400, ("config",), body={"name": "x"}, label="only a name")
    for config in (5, None, ["a"], {"k": "v"}, True):
        checks.refused(
            "POST", create, 400, ("config", "str"), body={"config": config}, label=f"config {config!r}"
        )
    checks.refused("POST", create, 400, ("name",), body={"config": VALID, "name": 5}, label="name 5")
    checks.refused("POST", trigger, 400, ("branch",), body={"branch": 7}, label="branch 7")
    checks.refused("POST", trigger, 400, ("sha",), body={"sha": 123}, label="sha 123")
    checks.verify()


def test_invalid_pipeline_configs_store_nothing(controller: Controller) -> None:
    controller.create_pipeline(VALID)
    checks = Checks(controller)
    path = "/api/v1/pipelines"
    for config in ("", "   ", "\n\t\n"):
        checks.refused("POST", path, 400, ("config", "empty"), body={"config": config}, label=repr(config))
    body = checks.refused("POST", path, 422, ("invalid", "fix"), body={"config": ONE_LINE_PITFALL})
    diagnostics = (body.get("extra") or {}).get("diagnostics")
    assert isinstance(diagnostics, list) and len(diagnostics) == 1, body
    (diagnostic,) = diagnostics
    assert diagnostic["line"] == 2 and diagnostic["col"] > 0, diagnostic
    assert "terminator" in diagnostic["message"].lower(), diagnostic
    assert "';'" in diagnostic["hint"] and 'stage "a" { run "x"; }' in diagnostic["hint"], diagnostic
    assert diagnostic["severity"] == "error"
    # Semantic errors are diagnostics too, each with its position.
    broken = 'pipeline "broken"\nstage "a" needs="ghost" { run "x"; }\nstage "a" { run "y"; }\n'
    body = checks.refused("POST", path, 422, ("invalid",), body={"config": broken})
    messages = [d["message"] for d in (body.get("extra") or {}).get("diagnostics", [])]
    assert any("ghost" in m for m in messages), messages
    assert all(d["line"] >= 1 for d in body["extra"]["diagnostics"]), body
    checks.refused("POST", path, 422, ("invalid",), body={"config": "no pipeline node here"})
    checks.refused("POST", path, 422, ("invalid",), body={"config": 'pipeline "x"\nstage "a" {\n'})
    # Duplicate names: from the file, and given explicitly.
    checks.refused("POST", path, 409, ("valid", "already exists", "another name"), body={"config": VALID})
    checks.refused(
        "POST",
        path,
        409,
        ("already exists",),
        body={"config": VALID.replace('"valid"', '"other"'), "name": "valid"},
    )
    checks.refused(
        "POST", path, 409, ("already exists",), body={"config": VALID, "name": "  valid  "}, label="padded"
    )
    for name in ("", "   ", "n" * 201):
        checks.refused(
            "POST", path, 400, ("name", "characters"), body={"config": VALID, "name": name}, label=name[:5]
        )
    checks.verify()


def test_nul_characters_are_refused_on_every_database(controller: Controller) -> None:
    # PostgreSQL cannot store U+0000 in text: accepting it must not become a 500 (or a burned run number).
    pipeline, _ = make_run(controller)
    checks = Checks(controller)
    nul = "\u0000"
    for label, body in (
        ("NUL in a command", {"config": f'pipeline "n1"\nstage "a" {{ run "x{nul}"; }}\n'}),
        ("NUL in the pipeline node", {"config": f'pipeline "n2{nul}"\nstage "a" {{ run "x"; }}\n'}),
        ("NUL in the name", {"config": VALID, "name": f"a{nul}b"}),
    ):
        checks.refused(
            "POST", "/api/v1/pipelines", {400, 422}, (("NUL", "null", "\\u0000"),), body=body, label=label
        )
    trigger = f"/api/v1/pipelines/{pipeline}/runs"
    for field in ("branch", "message", "author"):
        checks.refused("POST", trigger, 400, (field,), body={field: f"a{nul}b"}, label=f"NUL in {field}")
    checks.verify()


# --- unknown and malformed ids ---------------------------------------------------------------------


def test_unknown_and_malformed_ids_are_not_found(controller: Controller) -> None:
    pipeline, number = make_run(controller)
    checks = Checks(controller)
    scoped = [
        ("GET", ""),
        ("GET", "/runs"),
        ("POST", "/runs"),
        ("GET", f"/runs/{number}"),
        ("POST", f"/runs/{number}/cancel"),
        ("GET", f"/runs/{number}/stages/build/log"),
    ]
    for method, suffix in scoped:
        body = {"branch": "main"} if method == "POST" else None
        checks.refused(method, f"/api/v1/pipelines/{UNKNOWN}{suffix}", 404, (UNKNOWN, "not found"), body=body)
        for bad in MALFORMED_IDS:
            checks.refused(method, f"/api/v1/pipelines/{bad}{suffix}", {400, 404}, body=body)
    base = f"/api/v1/pipelines/{pipeline}/runs"
    for missing in (number + 1, 0, -1, 2**31 - 1):
        for method, suffix in (("GET", ""), ("POST", "/cancel"), ("GET", "/stages/build/log")):
            checks.refused(method, f"{base}/{missing}{suffix}", 404, (f"run {missing}", "not found"))
    for bad in ("abc", "1.5", "1e3", "%20"):
        checks.refused("GET", f"{base}/{bad}", {400, 404})
    checks.verify()


def test_huge_run_numbers_are_not_found_rather_than_server_errors(controller: Controller) -> None:
    # Run.number is a 32-bit Integer column: beyond it PostgreSQL refuses the query parameter, and
    # beyond 64 bits SQLite does too. Either way the run does not exist: 404, not 500.
    pipeline, _ = make_run(controller)
    checks = Checks(controller)
    base = f"/api/v1/pipelines/{pipeline}/runs"
    for huge in (2**31, 2**63, 10**30, -(2**63) - 1):
        for method, suffix in (("GET", ""), ("POST", "/cancel"), ("GET", "/stages/build/log")):
            checks.refused(method, f"{base}/{huge}{suffix}", {400, 404}, ("run",), label=str(huge))
    checks.verify()
    # `before` past every run lists them all (or is refused): never a server error.
    _, every, _ = controller.request("GET", f"{base}?limit=200")
    for before in (2**31, 2**63, 10**30):
        status, body, _ = controller.request("GET", f"{base}?before={before}")
        assert (status, body) == (200, every) or status == 400, (before, status, body)


# --- triggering and listing runs -------------------------------------------------------------------


def test_trigger_and_list_parameters_are_validated(controller: Controller) -> None:
    pipeline, _ = make_run(controller)
    checks = Checks(controller)
    path = f"/api/v1/pipelines/{pipeline}/runs"
    for branch in ("", "   ", "main\nrm -rf /", "a\rb", "b" * 300):
        checks.refused("POST", path, 400, ("branch",), body={"branch": branch}, label=repr(branch[:12]))
    for sha in ("xyz", "g" * 40, "abc", "a" * 65, "deadbeef; rm -rf /"):
        checks.refused("POST", path, 400, ("sha", "hex"), body={"branch": "main", "sha": sha}, label=sha[:12])
    for limit in ("0", "-1", "201", "100000"):
        checks.refused("GET", f"{path}?limit={limit}", 400, ("limit", "between"))
    checks.refused("GET", f"{path}?limit=abc", 400, ("limit",))
    checks.refused("GET", f"{path}?before=abc", 400, ("before",))
    checks.verify()
    # The valid edges work.
    status, body, _ = controller.request("GET", f"{path}?limit=200")
    assert status == 200 and len(body["runs"]) == 1, body
    status, body, _ = controller.request("GET", f"{path}?limit=1&before=1")
    assert status == 200 and body["runs"] == [], body


# --- logs and cancel -------------------------------------------------------------------------------


def test_log_and_cancel_errors(controller: Controller) -> None:
    pipeline, number = make_run(controller)
    base = f"/api/v1/pipelines/{pipeline}/runs/{number}"
    checks = Checks(controller)
    checks.refused("GET", f"{base}/stages/nope/log", 404, ("nope",))
    checks.refused("GET", f"{base}/stages/BUILD/log", 404, ("BUILD",), label="names are case-sensitive")
    checks.refused("GET", f"{base}/stages/{'x' * 3000}/log", 404, ("no stage",), label="long name")
    checks.refused("GET", f"{base}/stages/..%2F..%2Fetc%2Fpasswd/log", {400, 404}, label="traversal")
    checks.refused("GET", f"{base}/stages/build/log?offset=-1", 400, ("offset",))
    checks.refused("GET", f"{base}/stages/build/log?offset=abc", 400, ("offset",))
    for attempt in ("0", "2", "-1", "99999"):
        checks.refused("GET", f"{base}/stages/build/log?attempt={attempt}", 404, ("attempt",))
    checks.verify()

    # Cancel the queued run (no agent: it ends at once), then cancelling again is a conflict.
    status, body, _ = controller.request("POST", f"{base}/cancel")
    assert status == 200 and body["status"] == "cancelled", body
    checks.refused("POST", f"{base}/cancel", 409, ("already finished", "cancelled"))
    # A log read past the end is empty, not an error.
    status, text, headers = controller.request("GET", f"{base}/stages/build/log?offset=1000000")
    sizes = [v for k, v in headers.items() if k.lower() == "x-log-size"]
    assert status == 200 and text == "" and sizes == ["0"], (status, text, headers)
    checks.verify()


# --- HTTP-level errors -----------------------------------------------------------------------------


def send_huge(controller: Controller, path: str, data: bytes, chunked: bool) -> tuple[int, Any]:
    """POST a body too large to be accepted; (status, parsed body) of the answer.

    Sent with `Expect: 100-continue`, and the body only while the server has not answered yet, so
    the client never writes into a connection the server already refused (no broken pipe).
    """
    sock = socket.create_connection(("127.0.0.1", controller.http_port), timeout=30)
    try:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(data)}"
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {controller.api_key}\r\n"
            f"Expect: 100-continue\r\n{framing}\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        step = 64 * 1024
        for start in range(0, len(data) + step, step):
            readable, _, _ = select.select([sock], [], [], 0.5 if start == 0 else 0)
            if readable:
                received += sock.recv(65536)
                if received.startswith(b"HTTP/1.1 100"):
                    received = received.split(b"\r\n\r\n", 1)[1]
                if received:
                    break
            piece = data[start : start + step]
            try:
                if chunked:
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if piece else b"0\r\n\r\n")
                elif piece:
                    sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def test_huge_bodies_wrong_methods_and_unknown_paths(controller: Controller) -> None:
    pipeline, number = make_run(controller)
    checks = Checks(controller)
    config = VALID.replace('"valid"', '"huge"') + "// " + "x" * (2 * 1024 * 1024) + "\n"
    bodies = {
        "/api/v1/pipelines": json.dumps({"config": config}).encode(),
        f"/api/v1/pipelines/{pipeline}/runs": json.dumps({"message": "m" * (2 * 1024 * 1024)}).encode(),
    }
    for path, data in bodies.items():
        for chunked in (False, True):
            before = state(controller)
            status, body = send_huge(controller, path, data, chunked)
            what = f"POST {path} with {len(data)} bytes ({'chunked' if chunked else 'Content-Length'})"
            assert status == 413, (what, status, body)
            assert isinstance(body, dict) and "too large" in body.get("detail", "").lower(), (what, body)
            assert state(controller) == before, what

    run = f"/api/v1/pipelines/{pipeline}/runs/{number}"
    for method, path in (
        ("DELETE", "/api/v1/pipelines"),
        ("PUT", "/api/v1/pipelines"),
        ("PATCH", f"/api/v1/pipelines/{pipeline}"),
        ("POST", f"/api/v1/pipelines/{pipeline}"),
        ("DELETE", run),
        ("PUT", run),
        ("GET", f"{run}/cancel"),
        ("POST", f"{run}/stages/build/log"),
        ("POST", "/api/v1/agents"),
        ("DELETE", "/api/v1/agents"),
        ("POST", "/health"),
    ):
        checks.refused(method, path, 405, ("method not allowed",), body={} if method != "GET" else None)
    for path in (
        "/api/v1/nope",
        "/api/v2/pipelines",
        "/api/v1/pipeline",
        f"{run}/nope",
        f"{run}/stages/build",
        f"{run}/stages/build/log/extra",
        "/api/v1/agents/nope",
    ):
        checks.refused("GET", path, 404, ("not found",))
    checks.verify()


# --- positive checks -------------------------------------------------------------------------------


def test_health_ready_and_openapi(controller: Controller) -> None:
    status, body, _ = controller.request("GET", "/health")
    assert (status, body) == (200, {"status": "ok"})
    status, body, _ = controller.request("GET", "/ready")
    assert status == 200 and body["status"] == "ok", body
    status, schema, headers = controller.request("GET", "/schema/openapi.json")
    assert status == 200 and isinstance(schema, dict), (status, headers)
    assert schema["openapi"].startswith("3.") and schema["info"]["title"] == "BuildIt"
    paths = schema["paths"]
    for path, methods in {
        "/api/v1/pipelines": {"get", "post"},
        "/api/v1/pipelines/{pipeline_id}": {"get"},
        "/api/v1/pipelines/{pipeline_id}/runs": {"get", "post"},
        "/api/v1/pipelines/{pipeline_id}/runs/{number}": {"get"},
        "/api/v1/pipelines/{pipeline_id}/runs/{number}/cancel": {"post"},
        "/api/v1/pipelines/{pipeline_id}/runs/{number}/stages/{name}/log": {"get"},
        "/api/v1/agents": {"get"},
    }.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, sorted(paths[path]))


def test_tokens_never_appear_in_api_responses(controller: Controller) -> None:
    channel = grpc.insecure_channel(controller.grpc_address)
    try:
        registered = pb_grpc.AgentServiceStub(channel).Register(
            pb.RegisterRequest(
                registration_token=controller.token,
                name="secretive",
                labels={"zone": "a"},
                executors=["local"],
                capacity=2,
                version=__version__,
            ),
            timeout=10,
        )
    finally:
        channel.close()
    agent_token = registered.agent_token
    assert agent_token and agent_token != controller.token
    forbidden = {
        "registration token": controller.token,
        "agent token": agent_token,
        "agent token hash": hashlib.sha256(agent_token.encode()).hexdigest(),
    }
    pipeline, number = make_run(controller)
    run = f"/api/v1/pipelines/{pipeline}/runs/{number}"
    responses: dict[str, str] = {}
    agents: dict[str, Any] = {}
    for method, path in (
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/schema/openapi.json"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/pipelines"),
        ("GET", f"/api/v1/pipelines/{pipeline}"),
        ("GET", f"/api/v1/pipelines/{pipeline}/runs"),
        ("GET", run),
        ("GET", f"{run}/stages/build/log"),
        ("POST", f"/api/v1/pipelines/{pipeline}/runs"),
        ("POST", f"{run}/cancel"),
        ("GET", f"/api/v1/pipelines/{UNKNOWN}"),
        ("POST", "/api/v1/pipelines"),
    ):
        status, body, headers = controller.request(method, path, body={} if method == "POST" else None)
        responses[f"{method} {path} -> {status}"] = json.dumps(body) + json.dumps(headers)
        if path == "/api/v1/agents":
            agents = body
    assert [a["name"] for a in agents["agents"]] == ["secretive"], agents
    assert set(agents["agents"][0]) >= {"name", "labels", "executors", "capacity", "status", "version"}
    leaks = [
        f"{what} in {where}"
        for where, text in responses.items()
        for what, secret in forbidden.items()
        if secret in text
    ]
    assert not leaks, leaks
