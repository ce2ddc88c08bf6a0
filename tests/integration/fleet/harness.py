"""Real processes for fleet tests: a `buildit controller` and `buildit agent`s on loopback.

Each process is the installed console script, started with subprocess and stopped with real
signals (SIGTERM, or SIGKILL to simulate a crash). The controller is asked for port 0 and its
banner tells which ports it got; a restart reuses them so agents find it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from agent.contract import logmarks
from tests.support.credentials import admin_key, keyed_channel

BUILDIT = str(Path(sys.executable).with_name("buildit"))
FAST = {"BUILDIT_LEASE_TTL": "2", "BUILDIT_HEARTBEAT_INTERVAL": "0.3"}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `predicate` (test-side only) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Proc:
    """A child process whose output is collected in the background."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self._close()
        return code

    def _close(self) -> None:
        """Close our end of the output pipe once the reader is done with it (an unclosed pipe is a
        ResourceWarning, an error under `-W error`)."""
        if not self._reader.is_alive() and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self._close()


class Controller:
    """`buildit controller` on 127.0.0.1 with its own data dir and database."""

    def __init__(self, workdir: Path, database_url: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.env = {
            **os.environ,
            **FAST,
            **(env or {}),
            "BUILDIT_REGISTRATION_TOKEN": "test-registration-token",
        }
        self.token = "test-registration-token"
        self.http_port = 0
        self.grpc_port = 0
        self.proc: Proc | None = None
        #: The first admin's API key (issued after the first start; kept across restarts).
        self.api_key = ""

    def start(self) -> Controller:
        args = [
            BUILDIT,
            "controller",
            "--data-dir",
            str(self.workdir / "data"),
            "--database-url",
            self.database_url,
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
        ]
        self.proc = Proc(args, self.env, self.workdir)
        proc = self.proc

        def ready() -> bool:
            if proc.proc.poll() is not None:
                raise AssertionError(f"controller exited {proc.proc.returncode}:\n{proc.output}")
            return "join another agent" in proc.output

        wait_for(ready, 60, "the controller banner")
        http = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.output)
        grpc = re.search(r"agents \(gRPC\):\s+127\.0\.0\.1:(\d+)", proc.output)
        assert http and grpc, proc.output
        self.http_port, self.grpc_port = int(http.group(1)), int(grpc.group(1))
        if not self.api_key:
            self.api_key = admin_key(self.base_url, self.workdir / "data")
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def channel(self, key: str | None = None, tenant: str | None = None) -> grpc.Channel:
        """A gRPC channel to the controller whose calls carry an API key (the admin's by default)."""
        return keyed_channel(self.grpc_address, key or self.api_key, tenant)

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup."""
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    # -- HTTP ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON or text, headers) for one HTTP request, as the admin unless `key`
        (another API key) or an `Authorization` header is given (key="" for no credentials)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        auth: dict[str, str] = {}
        credential = self.api_key if key is None else key
        if credential:
            auth["Authorization"] = f"Bearer {credential}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **auth, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                payload = resp.read()
                status, hdrs = resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            payload, status, hdrs = exc.read(), exc.code, dict(exc.headers)
        text = payload.decode("utf-8", "replace")
        try:
            return status, json.loads(text), hdrs
        except ValueError:
            return status, text, hdrs

    def create_pipeline(self, config: str, name: str | None = None) -> str:
        status, body, _ = self.request("POST", "/api/v1/pipelines", {"config": config, "name": name})
        assert status == 201, body
        return str(body["id"])

    def trigger(self, pipeline_id: str, branch: str = "main") -> int:
        status, body, _ = self.request("POST", f"/api/v1/pipelines/{pipeline_id}/runs", {"branch": branch})
        assert status == 201, body
        return int(body["number"])

    def run(self, pipeline_id: str, number: int) -> dict[str, Any]:
        status, body, _ = self.request("GET", f"/api/v1/pipelines/{pipeline_id}/runs/{number}")
        assert status == 200, body
        return dict(body)

    def stage(self, pipeline_id: str, number: int, name: str) -> dict[str, Any]:
        for stage in self.run(pipeline_id, number)["stages"]:
            if stage["name"] == name:
                return dict(stage)
        raise AssertionError(f"no stage {name}")

    def wait_run(self, pipeline_id: str, number: int, timeout: float = 60) -> dict[str, Any]:
        finished = {"succeeded", "failed", "cancelled", "error", "timed_out", "skipped"}

        def done() -> dict[str, Any] | None:
            run = self.run(pipeline_id, number)
            return run if run["status"] in finished else None

        result: dict[str, Any] = wait_for(done, timeout, f"run {number} to finish")
        return result

    def log(
        self, pipeline_id: str, number: int, stage: str, offset: int = 0, attempt: int | None = None
    ) -> str:
        """What the stage's commands printed, as a terminal shows the log: BuildIt's markers
        removed (agent.contract.logmarks) and its closing line left out; `raw_log` is the log as
        stored."""
        raw = self.raw_log(pipeline_id, number, stage, offset, attempt)
        lines = raw.split("\n")
        kept = [line for line in lines if (mark := logmarks.parse(line)) is None or mark.kind != logmarks.END]
        return logmarks.plain("\n".join(kept))

    def raw_log(
        self, pipeline_id: str, number: int, stage: str, offset: int = 0, attempt: int | None = None
    ) -> str:
        """The stage's log as stored (GET …/log), from byte `offset`."""
        query = f"?offset={offset}" + (f"&attempt={attempt}" if attempt else "")
        status, body, _ = self.request(
            "GET", f"/api/v1/pipelines/{pipeline_id}/runs/{number}/stages/{stage}/log{query}"
        )
        assert status == 200, body
        return body if isinstance(body, str) else json.dumps(body)

    def agents(self) -> list[dict[str, Any]]:
        status, body, _ = self.request("GET", "/api/v1/agents")
        assert status == 200, body
        return list(body["agents"])


class Agent:
    """`buildit agent` with its own state dir."""

    def __init__(
        self,
        workdir: Path,
        controller: Controller,
        name: str,
        capacity: int = 1,
        labels: str = "",
        env: dict[str, str] | None = None,
        registration_token: str | None = None,
        executor: str = "local",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`registration_token`: another than the controller's own (org-wide) one, e.g. a tenant's.
        `executor` and `extra_args` (e.g. `--namespace NS`): for agents other than local ones."""
        self.name = name
        self.state_dir = workdir / f"agent-{name}"
        args = [
            BUILDIT,
            "agent",
            "--controller",
            controller.grpc_address,
            "--registration-token",
            registration_token or controller.token,
            "--name",
            name,
            "--capacity",
            str(capacity),
            "--executor",
            executor,
            "--state-dir",
            str(self.state_dir),
            *extra_args,
        ]
        if labels:
            args += ["--labels", labels]
        self.proc = Proc(args, {**os.environ, **FAST, **(env or {})}, workdir)

    def kill(self) -> None:
        self.proc.signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.stop()


@contextlib.contextmanager
def controller_with_agents(
    tmp_path: Path, database_url: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Controller, list[Agent]]]:
    """A started controller and the list a test adds its agents to; every process stopped after."""
    controller = Controller(tmp_path, database_url, env=env).start()
    agents: list[Agent] = []
    try:
        yield controller, agents
    finally:
        for agent in agents:
            agent.stop()
        controller.stop()
