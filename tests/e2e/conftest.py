"""Browser tests against a real `buildit up` (controller + embedded local agent, SQLite, loopback).

One `buildit up` per test module, started in a temp dir with free ports and no pipelines (the
dashboard's empty state is the first thing tested); tests add the pipelines they need over the
REST API. Playwright drives Debian's chromium (`playwright install` cannot download here).
Screenshots of every page go to tests/e2e/.output/ (gitignored).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet.harness import BUILDIT, Proc, wait_for
from tests.support.credentials import admin_password, issue_key

OUTPUT = Path(__file__).parent / ".output"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
FINISHED = {"succeeded", "failed", "cancelled", "error", "timed_out", "skipped"}


@dataclass
class Up:
    """A running `buildit up` and helpers for its REST API."""

    proc: Proc
    base: str
    workdir: Path
    gates: set[Path] = field(default_factory=set)
    #: The first admin's password and an API key of theirs for the REST helpers.
    password: str = ""
    key: str = ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **(headers or {})}
        if key if key is not None else self.key:
            headers["Authorization"] = f"Bearer {key if key is not None else self.key}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def pipeline(self, config: str) -> str:
        status, body = self.request("POST", "/api/v1/pipelines", {"config": config})
        assert status == 201, body
        return str(body["id"])

    def trigger(self, pipeline_id: str) -> int:
        status, body = self.request("POST", f"/api/v1/pipelines/{pipeline_id}/runs", {"branch": "main"})
        assert status == 201, body
        return int(body["number"])

    def run(self, pipeline_id: str, number: int) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/v1/pipelines/{pipeline_id}/runs/{number}")
        assert status == 200, body
        return dict(body)

    def wait_run(self, pipeline_id: str, number: int, timeout: float = 120) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (r := self.run(pipeline_id, number))["status"] in FINISHED and r,
                timeout,
                f"run {number} to finish",
            )
        )

    def gate(self, name: str) -> Path:
        """A file a stage waits for (`while [ ! -f GATE ]`), created by the test to let it go on."""
        path = self.workdir / "gates" / name
        self.gates.add(path)
        return path


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[Up]:
    """`buildit up` on 127.0.0.1 with free ports, a temp data dir and the local executor."""
    workdir = tmp_path_factory.mktemp("up")
    (workdir / "gates").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    proc = Proc([BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local"], env, workdir)
    try:
        wait_for(lambda: "embedded agent" in proc.output or proc.proc.poll() is not None, 60, "the banner")
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.output)
        assert match, proc.output
        instance = Up(proc, f"http://127.0.0.1:{match.group(1)}", workdir)
        instance.password = admin_password(workdir / ".buildit")
        instance.key = issue_key(instance.base, "admin", instance.password)
        yield instance
        for gate in instance.gates:  # a failed test may leave a stage waiting: let it finish
            gate.touch()
    finally:
        proc.signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.proc.kill()
            proc.wait(10)
            raise


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Headless Debian chromium under Playwright (sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, up: Up) -> Iterator[Any]:
    """A fresh browser context (laptop-sized) signed in as the first admin; page errors fail the test."""
    with signed_in(browser, up, "admin", up.password) as page:
        yield page


@contextmanager
def signed_in(browser: Any, up: Up, username: str, password: str) -> Iterator[Any]:
    """A page of a fresh browser context signed in as `username` through the login page; a page
    error, a CSP violation or a request leaving the controller fails the test."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=up.base)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The UI pages' Content-Security-Policy: anything it blocks (an inline style or script, eval)
    # is a broken page and fails the test. Chromium reports each violation on the console.
    def csp_violation(message: Any) -> None:
        if "Content Security Policy" in message.text:
            errors.append(f"CSP violation: {message.text}")

    context.on("console", csp_violation)

    # Every request stays on the controller: no CDN, nothing external (and nothing leaves the machine).
    def refuse(route: Any) -> None:
        errors.append(f"external request: {route.request.url}")
        route.abort()

    context.route(re.compile(rf"^(?!{re.escape(up.base)}/|data:)"), refuse)
    try:
        sign_in(page, username, password)
        yield page
    finally:
        context.close()
    assert not errors, errors


def sign_in(page: Any, username: str, password: str) -> None:
    """Sign in through the login page, as a person does."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/(\?.*)?$"))


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot under tests/e2e/.output/."""
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)
