"""Outgoing notifications end to end: a real controller and agent, a real receiver on 127.0.0.1.

Signatures verify, each event arrives once, a 500 is retried until it succeeds, a receiver that
stays down ends as a failure in the delivery log, and a controller restarted mid-retry delivers.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.notify import signing
from tests.integration.fleet.harness import BUILDIT, Agent, Controller, wait_for
from tests.integration.notify.receiver import Received, receiver
from tests.support.credentials import issue_key

PIPELINE = """\
pipeline "notified"

env "MODE" "ok"

stage "check" {
    run "echo checking; test $MODE = ok"
}
"""
FAST_RETRIES = {"BUILDIT_NOTIFY_RETRY": "0.2"}


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, Agent]]:
    """A controller (on SQLite, then on PostgreSQL) and one agent."""
    controller = Controller(tmp_path, database_url, env=FAST_RETRIES).start()
    agent = Agent(tmp_path, controller, "a1")
    try:
        yield controller, agent
    finally:
        agent.stop()
        controller.stop()


def ok(result: tuple[int, Any, dict[str, str]], status: int = 200) -> Any:
    code, body, _ = result
    assert code == status, body
    return body


def add(controller: Controller, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    created: dict[str, Any] = ok(controller.request("POST", "/api/v1/notifications", body, key=key), 201)
    return created


def run(controller: Controller, pipeline: str, mode: str) -> dict[str, Any]:
    """Trigger a run (MODE=ok succeeds, anything else fails) and wait for its end."""
    started = ok(
        controller.request("POST", f"/api/v1/pipelines/{pipeline}/runs", {"env": {"MODE": mode}}), 201
    )
    return controller.wait_run(pipeline, int(started["number"]))


def deliveries(controller: Controller, notification: str) -> list[dict[str, Any]]:
    path = f"/api/v1/notifications/{notification}/deliveries"
    found: list[dict[str, Any]] = ok(controller.request("GET", path))["deliveries"]
    return found


def newest(controller: Controller, notification: str) -> dict[str, Any]:
    """The newest delivery of a notification; {} while the finished run's is not written yet (it is
    written just after the run finishes, not with it)."""
    log = deliveries(controller, notification)
    return log[0] if log else {}


def verified(request: Received, secret: str) -> dict[str, Any]:
    """The request's JSON body, once its signature and timestamp check out as a receiver checks them."""
    headers = request.headers
    assert signing.verify(
        secret,
        headers["x-buildit-timestamp"],
        headers["x-buildit-signature"],
        request.body,
        time.time(),
    ), headers
    assert not signing.verify(
        "another secret of 16+ chars",
        headers["x-buildit-timestamp"],
        headers["x-buildit-signature"],
        request.body,
        time.time(),
    )
    assert headers["content-type"] == "application/json" and headers["user-agent"].startswith("BuildIt/")
    body: dict[str, Any] = json.loads(request.body)
    return body


def test_signed_events_finished_failed_fixed_arrive_once_each(fleet: tuple[Controller, Agent]) -> None:
    controller, _ = fleet
    pipeline = controller.create_pipeline(PIPELINE)
    with receiver() as hook, receiver() as slack:
        every = add(controller, {"url": hook.url, "pipeline": "notified", "name": "team hook"})
        assert every["events"] == ["fixed", "failed", "finished"] and every["url"] == hook.url
        assert every["scope"] == "pipeline" and every["pipeline"]["id"] == pipeline
        secret = every["secret"]
        broken = add(controller, {"url": slack.url, "format": "slack", "events": ["failed"]})
        assert broken["scope"] == "tenant" and broken["name"] == "127.0.0.1"

        assert run(controller, pipeline, "bad")["status"] == "failed"
        assert run(controller, pipeline, "ok")["status"] == "succeeded"
        assert run(controller, pipeline, "ok")["status"] == "succeeded"
        wait_for(lambda: len(hook.received()) >= 3 and slack.received(), 30, "the notifications")
        time.sleep(1.0)  # a duplicate would come now

        received = hook.received()
        bodies = [verified(r, secret) for r in received]
        assert [(b["event"], b["run"]["number"], b["run"]["status"]) for b in bodies] == [
            ("failed", 1, "failed"),
            ("fixed", 2, "succeeded"),
            ("finished", 3, "succeeded"),
        ]
        assert [r.headers["x-buildit-event"] for r in received] == ["failed", "fixed", "finished"]
        assert len({r.headers["x-buildit-delivery"] for r in received}) == 3
        first = bodies[0]
        assert first["pipeline"] == {"id": pipeline, "name": "notified"}
        assert first["run"]["url"] == f"{controller.base_url}/pipelines/{pipeline}/runs/1"
        assert [(s["name"], s["status"], s["exit_code"]) for s in first["failed_stages"]] == [
            ("check", "failed", 1)
        ]
        assert bodies[1]["previous_status"] == "failed" and bodies[2]["previous_status"] == "succeeded"

        [message] = slack.received()  # failed only: run 1
        text = json.loads(message.body)
        assert list(text) == ["text"] and "*notified*" in text["text"] and "run 1> failed" in text["text"]

    log = deliveries(controller, every["id"])
    assert [
        (d["run"]["number"], d["event"], d["status"], d["attempts"], d["last_status_code"]) for d in log
    ] == [
        (3, "finished", "delivered", 1, 200),
        (2, "fixed", "delivered", 1, 200),
        (1, "failed", "delivered", 1, 200),
    ]
    # Listings show neither the secret nor the URL's path; the answer at creation was the only time.
    listed = ok(controller.request("GET", "/api/v1/notifications"))["notifications"]
    assert {n["url"] for n in listed} == {
        hook.url.rsplit("/", 1)[0] + "/…",
        slack.url.rsplit("/", 1)[0] + "/…",
    }
    assert secret not in json.dumps(listed) and "secret" not in listed[0]


def test_a_500_is_retried_until_it_succeeds(fleet: tuple[Controller, Agent]) -> None:
    controller, _ = fleet
    pipeline = controller.create_pipeline(PIPELINE)
    with receiver(answers=[500, 500]) as hook:
        created = add(controller, {"url": hook.url, "events": ["finished"]})
        run(controller, pipeline, "ok")
        wait_for(lambda: newest(controller, created["id"]).get("status") == "delivered", 30, "delivery")
        received = hook.received()
    assert len(received) == 3
    assert len({r.headers["x-buildit-delivery"] for r in received}) == 1  # one delivery, three attempts
    assert len({r.body for r in received}) == 1  # the same body every time, signed anew
    for request in received:
        verified(request, created["secret"])
    [entry] = deliveries(controller, created["id"])
    assert (entry["status"], entry["attempts"], entry["last_status_code"], entry["last_error"]) == (
        "delivered",
        3,
        200,
        "",
    )


def test_a_receiver_down_past_the_retries_shows_the_failure(tmp_path: Path) -> None:
    env = {"BUILDIT_NOTIFY_RETRY": "0.1", "BUILDIT_NOTIFY_ATTEMPTS": "3"}
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env=env).start()
    agent = Agent(tmp_path, controller, "a1")
    try:
        pipeline = controller.create_pipeline(PIPELINE)
        with receiver(then=503) as refusing:
            down = add(controller, {"url": f"http://127.0.0.1:{_closed_port()}/hook"})
            busy = add(controller, {"url": refusing.url})
            run(controller, pipeline, "bad")

            def ended(notification: str) -> dict[str, Any] | None:
                log = deliveries(controller, notification)
                return log[0] if log and log[0]["status"] != "pending" else None

            unreachable = wait_for(lambda: ended(down["id"]), 30, "the unreachable delivery to give up")
            refused = wait_for(lambda: ended(busy["id"]), 30, "the refused delivery to give up")
            assert len(refusing.received()) == 3
    finally:
        agent.stop()
        controller.stop()
    assert (unreachable["status"], unreachable["attempts"], unreachable["last_status_code"]) == (
        "failed",
        3,
        None,
    )
    assert unreachable["last_error"].startswith("could not connect"), unreachable
    assert (refused["status"], refused["attempts"], refused["last_status_code"]) == ("failed", 3, 503)
    assert refused["last_error"] == "HTTP 503: receiver says no"
    assert refused["next_attempt_at"] is None and refused["event"] == "failed"
    assert controller.proc is not None
    assert "attempt 3 of 3 failed (HTTP 503: receiver says no); giving up" in controller.proc.output


def test_a_controller_restarted_mid_retry_still_delivers(tmp_path: Path) -> None:
    # The first attempt gets a 500; the retry is due 2 s later, when the controller is down.
    controller = Controller(
        tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env={"BUILDIT_NOTIFY_RETRY": "2"}
    )
    controller.start()
    agent = Agent(tmp_path, controller, "a1")
    try:
        pipeline = controller.create_pipeline(PIPELINE)
        with receiver(answers=[500]) as hook:
            created = add(controller, {"url": hook.url})
            run(controller, pipeline, "ok")
            # `attempts` counts attempts started, so wait for the first one's answer to be recorded.
            wait_for(
                lambda: newest(controller, created["id"]).get("last_status_code") is not None,
                30,
                "the first attempt's answer",
            )
            [pending] = deliveries(controller, created["id"])
            assert (pending["status"], pending["last_status_code"]) == ("pending", 500), pending
            assert pending["last_error"] == "HTTP 500: receiver says no" and pending["next_attempt_at"]
            controller.kill()  # a crash: nothing is cleaned up
            time.sleep(2.5)
            controller.start()
            entry = wait_for(
                lambda: (d := newest(controller, created["id"])).get("status") == "delivered" and d,
                30,
                "the delivery after the restart",
            )
            received = hook.received()
    finally:
        agent.stop()
        controller.stop()
    assert (entry["attempts"], entry["last_status_code"], entry["last_error"]) == (2, 200, "")
    assert len(received) == 2 and received[0].body == received[1].body
    assert received[0].headers["x-buildit-delivery"] == received[1].headers["x-buildit-delivery"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_who_may_notify_where_and_bad_input_changes_nothing(tmp_path: Path) -> None:
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}").start()
    try:
        password = "a long enough password"
        ok(controller.request("POST", "/api/v1/users", {"username": "max", "password": password}), 201)
        ok(controller.request("PUT", "/api/v1/grants", {"user": "max", "role": "maintainer"}))
        maintainer = issue_key(controller.base_url, "max", password)
        refusals = [
            # the rules of repository registration: internal hosts and plaintext need an org admin
            ({"url": "https://127.0.0.1:9/hook"}, maintainer, 403, "own machine or network"),
            ({"url": "https://localhost/hook"}, maintainer, 403, "own machine or network"),
            ({"url": "http://hooks.example.com/x"}, maintainer, 403, "unencrypted"),
            ({"url": "ftp://hooks.example.com/x"}, None, 400, "must start with https://"),
            ({"url": "https://user:pw@hooks.example.com/x"}, None, 400, "must not hold credentials"),
            ({"url": "https://hooks.example.com/x", "events": ["done"]}, None, 400, "unknown event(s) done"),
            ({"url": "https://hooks.example.com/x", "format": "xml"}, None, 400, "'format' must be one of"),
            ({"url": "https://hooks.example.com/x", "secret": "short"}, None, 400, "'secret' must be"),
            (
                {"url": "https://hooks.example.com/x", "pipeline": "nope"},
                None,
                404,
                "pipeline 'nope' not found",
            ),
        ]
        for body, key, status, words in refusals:
            code, answer, _ = controller.request("POST", "/api/v1/notifications", body, key=key)
            assert (code, words in str(answer.get("detail"))) == (status, True), (body, answer)
        assert ok(controller.request("GET", "/api/v1/notifications"))["notifications"] == []
        # A maintainer may name a public https host; a viewer may not even list them.
        made = add(controller, {"url": "https://hooks.example.com/services/T0/B0/XYZ"}, key=maintainer)
        assert made["url"] == "https://hooks.example.com/services/T0/B0/XYZ" and len(made["secret"]) >= 32
        listed = ok(controller.request("GET", f"/api/v1/notifications/{made['id']}", key=maintainer))
        assert listed["url"] == "https://hooks.example.com/…"
        ok(controller.request("DELETE", f"/api/v1/notifications/{made['id']}", key=maintainer), 204)
        code, _, _ = controller.request("DELETE", f"/api/v1/notifications/{made['id']}", key=maintainer)
        assert code == 404
    finally:
        controller.stop()


def test_the_cli_adds_lists_shows_the_log_and_removes(tmp_path: Path) -> None:
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}").start()
    env = {**os.environ, "BUILDIT_URL": controller.base_url, "BUILDIT_TOKEN": controller.api_key}

    def buildit(*args: str) -> str:
        done = subprocess.run([BUILDIT, "notify", *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        controller.create_pipeline(PIPELINE)
        added = buildit(
            "add",
            "http://127.0.0.1:9/hook",
            "--pipeline",
            "notified",
            "--event",
            "failed",
            "--format",
            "slack",
        )
        notification = re.search(r"\(([0-9a-f-]{36})\)", added).group(1)  # type: ignore[union-attr]
        secret = re.search(r"signing secret \(shown once\): (\S+)", added).group(1)  # type: ignore[union-attr]
        assert "for pipeline notified: failed" in added
        listed = buildit("list")
        assert notification in listed and "http://127.0.0.1:9/…" in listed and secret not in listed
        assert "no deliveries yet" in buildit("log", notification)
        assert f"removed notification {notification}" in buildit("rm", notification)
        assert "no notifications" in buildit("list")
        refused = subprocess.run(
            [BUILDIT, "notify", "add", "ftp://example.com/x"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "must start with https://" in refused.stderr
    finally:
        controller.stop()
