"""Cross-site protection and request hygiene on a real `buildit controller` (uvicorn on 127.0.0.1).

One controller for the module, with a 1 s body deadline (BUILDIT_HTTP_BODY_TIMEOUT) and a public
URL behind a pretend proxy (BUILDIT_PUBLIC_URL), driven with raw HTTP (http.client, sockets) and a
real WebSocket client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.integration.fleet.harness import Agent, Controller

PUBLIC = "https://ci.example.test"
UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PIPELINE = 'pipeline "web-sec"\nstage "s" { run "true"; }\n'


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    workdir = tmp_path_factory.mktemp("websec")
    env = {"BUILDIT_HTTP_BODY_TIMEOUT": "1", "BUILDIT_PUBLIC_URL": PUBLIC}
    running = Controller(workdir, f"sqlite:///{workdir / 'buildit.db'}", env=env).start()
    try:
        yield running
    finally:
        running.stop()


def credentials(controller: Controller) -> dict[str, str]:
    """The admin's API key once the controller authenticates callers (the harness signs in)."""
    key = str(getattr(controller, "api_key", "") or "")
    return {"Authorization": f"Bearer {key}"} if key else {}


def send(
    controller: Controller,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request with exactly these headers and the credentials (http.client adds only Host and
    Content-Length)."""
    connection = http.client.HTTPConnection("127.0.0.1", controller.http_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={**credentials(controller), **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        found = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    try:
        return response.status, found, json.loads(raw)
    except ValueError:
        return response.status, found, raw.decode("utf-8", "replace")


def auth_lines(controller: Controller) -> bytes:
    """The credentials as raw header lines."""
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in credentials(controller).items())


def pipeline_names(controller: Controller) -> set[str]:
    status, body, _ = controller.request("GET", "/api/v1/pipelines")
    assert status == 200
    return {p["name"] for p in body["pipelines"]}


# --- JSON routes take JSON --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_a_json_body_sent_as_another_type_is_refused_before_the_handler(
    controller: Controller, content_type: str
) -> None:
    body = json.dumps({"config": PIPELINE, "name": "smuggled"}).encode()
    status, _, answer = send(controller, "POST", "/api/v1/pipelines", body, {"Content-Type": content_type})
    assert status == 415, answer
    assert answer["detail"].startswith(
        f"this route takes a JSON body, and the request has Content-Type '{content_type}'"
    )
    assert "smuggled" not in pipeline_names(controller)


def test_a_body_without_content_type_is_refused_and_json_types_are_accepted(controller: Controller) -> None:
    body = json.dumps({"config": PIPELINE, "name": "typed"}).encode()
    status, _, answer = send(controller, "POST", "/api/v1/pipelines", body)
    assert status == 415 and "no Content-Type" in answer["detail"]
    status, _, answer = send(
        controller, "POST", "/api/v1/pipelines", body, {"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 201, answer
    pipeline_id = answer["id"]
    run = json.dumps({"branch": "main"}).encode()
    status, _, answer = send(
        controller,
        "POST",
        f"/api/v1/pipelines/{pipeline_id}/runs",
        run,
        {"Content-Type": "application/vnd.x+json"},
    )
    assert status == 201, answer


def test_bodiless_api_actions_need_no_content_type_but_refuse_a_form(controller: Controller) -> None:
    missing = "/api/v1/agents/00000000-0000-0000-0000-000000000000/drain"
    assert send(controller, "POST", missing)[0] == 404  # curl -X POST: reaches the handler
    status, _, answer = send(
        controller, "POST", missing, b"", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 415, answer


def test_webhooks_keep_their_own_content_types(controller: Controller) -> None:
    status, _, answer = send(
        controller,
        "POST",
        "/hooks/github",
        b"payload=%7B%7D",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status != 415, answer  # refused for its missing signature, not for its type
    assert status in (400, 401, 404), answer


# --- deep JSON -------------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400_that_says_so(controller: Controller) -> None:
    deep = b'{"config": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    status, _, answer = send(
        controller, "POST", "/api/v1/pipelines", deep, {"Content-Type": "application/json"}
    )
    assert status == 400, answer
    assert (
        answer["detail"]
        == "the request body is refused: the JSON nests 10001 levels deep; at most 64 levels are accepted"
    )
    hook = b"[" * 5_000 + b"]" * 5_000
    status, _, answer = send(
        controller,
        "POST",
        "/hooks/git/00000000-0000-0000-0000-000000000000",
        hook,
        {"Content-Type": "application/json", "Authorization": "Bearer x"},
    )
    assert status in (400, 401, 404), answer  # never 500


def test_deeply_nested_json_on_the_socket_is_an_error_message_and_the_socket_stays(
    controller: Controller,
) -> None:
    async def talk() -> list[dict[str, Any]]:
        async with websockets.connect(
            f"ws://127.0.0.1:{controller.http_port}/ws", additional_headers=credentials(controller)
        ) as ws:
            await ws.send("[" * 20_000 + "]" * 20_000)
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"op": "watch", "topic": "nope"}))
            second = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return [first, second]

    first, second = asyncio.run(talk())
    assert first["type"] == "error" and "nests 20000 levels deep" in first["message"]
    assert second["type"] == "error" and '"topic" must be one of' in second["message"]


# --- a body that never completes ---------------------------------------------------------------


def test_a_body_that_never_completes_is_answered_408_and_closed(controller: Controller) -> None:
    with socket.create_connection(("127.0.0.1", controller.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + auth_lines(controller)
            + b'Content-Length: 1000\r\n\r\n{"config": '
        )
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        waited = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert b"connection: close" in head.lower()
    assert json.loads(body)["detail"].startswith("the request body did not arrive within 1 s")
    assert 0.8 <= waited < 5  # answered at the deadline, and the connection closed (recv got b"")


def test_a_body_sent_in_parts_within_the_deadline_is_fine(controller: Controller) -> None:
    body = json.dumps({"config": PIPELINE, "name": "in-parts"}).encode()
    with socket.create_connection(("127.0.0.1", controller.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + auth_lines(controller)
            + b"Connection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body[:10]
        )
        time.sleep(0.4)
        sock.sendall(body[10:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 201 "), received


# --- security headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "csp"),
    [
        ("/", UI_CSP),
        ("/pipelines", UI_CSP),
        ("/pipelines/00000000-0000-0000-0000-000000000000", UI_CSP),  # the UI's not-found page
        ("/api/v1/pipelines", "default-src 'none'; frame-ancestors 'none'; sandbox"),
        ("/no/such/route", UI_CSP),  # a UI path naming nothing: the HTML not-found page
        ("/api/v1/no/such/route", "default-src 'none'; frame-ancestors 'none'; sandbox"),
        ("/static/app.css", "default-src 'none'; frame-ancestors 'none'; sandbox"),
        ("/health", "default-src 'none'; frame-ancestors 'none'; sandbox"),
        ("/schema/openapi.json", "default-src 'none'; frame-ancestors 'none'; sandbox"),
    ],
)
def test_every_response_carries_the_security_headers(controller: Controller, path: str, csp: str) -> None:
    _, headers, _ = send(controller, "GET", path)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["content-security-policy"] == csp


# --- Origin ---------------------------------------------------------------------------------------


def test_a_write_from_another_origin_is_refused_and_the_own_origins_are_not(controller: Controller) -> None:
    body = json.dumps({"config": PIPELINE, "name": "cross"}).encode()
    for origin in ("http://evil.example", "null", f"http://localhost:{controller.http_port}"):
        status, _, answer = send(
            controller,
            "POST",
            "/api/v1/pipelines",
            body,
            {"Content-Type": "application/json", "Origin": origin},
        )
        assert status == 403, (origin, answer)
        assert answer["detail"].startswith("cross-origin request refused")
    assert "cross" not in pipeline_names(controller)
    # A bodiless action from another origin (what a no-cors fetch can send) is refused too.
    missing = "/api/v1/agents/00000000-0000-0000-0000-000000000000/drain"
    assert send(controller, "POST", missing, None, {"Origin": "http://evil.example"})[0] == 403
    own = f"http://127.0.0.1:{controller.http_port}"
    for origin, name in ((own, "same-origin"), (PUBLIC, "public-origin")):
        named = json.dumps({"config": PIPELINE, "name": name}).encode()
        status, _, answer = send(
            controller,
            "POST",
            "/api/v1/pipelines",
            named,
            {"Content-Type": "application/json", "Origin": origin},
        )
        assert status == 201, (origin, answer)
    # Reads are not refused: a foreign page cannot read the answer anyway (no CORS headers).
    assert send(controller, "GET", "/api/v1/pipelines", None, {"Origin": "http://evil.example"})[0] == 200


def test_the_socket_accepts_its_own_origins_and_refuses_others_before_any_subscription(
    controller: Controller,
) -> None:
    url = f"ws://127.0.0.1:{controller.http_port}/ws"

    async def outcome(origin: str | None) -> str:
        try:
            async with websockets.connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                additional_headers=credentials(controller),
            ) as ws:
                await ws.send(json.dumps({"op": "watch", "topic": "agents"}))
                await asyncio.sleep(0.1)
                return "open"
        except websockets.InvalidStatus as exc:
            return str(exc.response.status_code)

    async def all_of() -> dict[str | None, str]:
        origins = [None, f"http://127.0.0.1:{controller.http_port}", PUBLIC, "http://evil.example", "null"]
        return {origin: await outcome(origin) for origin in origins}

    seen = asyncio.run(all_of())
    assert seen == {
        None: "open",
        f"http://127.0.0.1:{controller.http_port}": "open",
        PUBLIC: "open",
        "http://evil.example": "403",
        "null": "403",
    }


# --- names shown to people ---------------------------------------------------------------------


def test_names_with_bidi_zero_width_or_control_characters_are_refused(controller: Controller) -> None:
    status, body, _ = controller.request(
        "POST", "/api/v1/pipelines", {"config": PIPELINE, "name": "rev\u202eexe"}
    )
    assert status == 400, body
    assert body["detail"].startswith(
        "'name' 'rev\\u202eexe' contains U+202E RIGHT-TO-LEFT OVERRIDE (a bidirectional control) "
        "at character 4"
    )
    status, body, _ = controller.request(
        "POST", "/api/v1/pipelines", {"config": 'pipeline "a\u200bb"\nstage "s" { run "x"; }\n'}
    )
    assert status == 422, body
    (diagnostic,) = body["extra"]["diagnostics"]
    assert (diagnostic["line"], diagnostic["col"]) == (1, 12)
    assert diagnostic["text"].startswith(
        ".buildit.kdl:1:12: error: the pipeline name 'a\\u200bb' contains U+200B ZERO WIDTH SPACE"
    )
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(Path.cwd()), "name": "repo\n"})
    assert status == 400, body
    assert "U+000A LINE FEED (a control character) at character 5" in body["detail"]


def test_an_agent_named_with_a_bidi_control_is_refused_at_registration(
    controller: Controller, tmp_path: Path
) -> None:
    agent = Agent(tmp_path, controller, "agent\u2067one")
    try:
        assert agent.proc.wait(30) == 1
    finally:
        agent.stop()
    assert "agent name 'agent\\u2067one' contains U+2067 RIGHT-TO-LEFT ISOLATE" in agent.proc.output
    assert all("\u2067" not in a["name"] for a in controller.agents())
