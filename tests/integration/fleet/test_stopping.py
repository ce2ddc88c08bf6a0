"""A clean stop, with real processes and real signals.

`buildit up`: the first SIGINT says how many stages it finishes and for how long, lets those that
can finish report, and cancels the rest ("controller stopped") when the grace period ends; the
second stops at once; after a kill -9 the next start records what was cut off; nothing is re-run
silently and no traceback is printed. `buildit controller`: its stop leaves the stages running
on agents alone (they report when it is back). `buildit agent`: told to stop while its controller
is down, it says so, gives up after `--report-wait` and reports the kept result at its next start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import processes
from tests.integration.fleet.harness import BUILDIT, FAST, Agent, Controller, Proc, wait_for
from tests.integration.live.client import connect, receive_until, send
from tests.support.credentials import admin_key

pytestmark = pytest.mark.timeout(240)

GRACE_S = 6


class Up:
    """`buildit up` in a directory of its own (SQLite under ./.buildit), started and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.marker = processes.marker()
        pipeline = workdir / "stop.kdl"
        pipeline.write_text(
            'pipeline "stop"\n'
            f'stage "slow" {{ run "echo started; sleep {self.marker}"; }}\n'
            'stage "short" { run "sleep 2; echo short done"; }\n'
            'stage "later" needs="slow" { run "echo never"; }\n'
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
        self.env.update({"BUILDIT_STOP_GRACE": str(GRACE_S), **FAST})
        self.proc: Proc | None = None
        self.port = 0
        self.key = ""

    def start(self, *flags: str) -> Proc:
        args = [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local", *flags]
        self.proc = proc = Proc(args, self.env, self.workdir)
        wait_for(lambda: "embedded agent" in proc.output or proc.proc.poll() is not None, 60, "the banner")
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.output)
        assert found and proc.proc.poll() is None, proc.output
        self.port = int(found.group(1))
        self.key = admin_key(f"http://127.0.0.1:{self.port}", self.workdir / ".buildit")
        return proc

    def start_run(self) -> Proc:
        """Start with the pipeline registered and triggered; returns once both its stages run."""
        proc = self.start("--pipelines", str(self.workdir / "stop.kdl"), "--trigger", "stop")
        wait_for(lambda: processes.pids_with(self.marker), 30, "the slow stage's process")

        def both_running() -> bool:
            return all(s["status"] == "running" for s in self.run()["stages"] if s["name"] != "later")

        wait_for(both_running, 30, "both stages running")
        return proc

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {self.key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def run(self) -> dict[str, Any]:
        [pipeline] = [p for p in self.get("/api/v1/pipelines")["pipelines"] if p["name"] == "stop"]
        run: dict[str, Any] = self.get(f"/api/v1/pipelines/{pipeline['id']}/runs/1")
        return run

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    instance = Up(tmp_path)
    try:
        yield instance
    finally:
        instance.stop()
        processes.kill_all(instance.marker)


def stages(run: dict[str, Any]) -> dict[str, tuple[str, int, str]]:
    return {s["name"]: (s["status"], s["attempt"], s["message"]) for s in run["stages"]}


def test_up_first_sigint_finishes_what_it_can_within_the_grace_and_cancels_the_rest(up: Up) -> None:
    proc = up.start_run()
    sent = time.monotonic()
    proc.signal(signal.SIGINT)
    code = proc.wait(GRACE_S + 30)
    took = time.monotonic() - sent
    assert code == 0, proc.output
    assert f"buildit: stopping: finishing 2 stages for up to {GRACE_S}s" in proc.output, proc.output
    assert "buildit: stopping after 6s: cancelling 1 stage still running (controller stopped)" in proc.output
    assert "Traceback" not in proc.output, proc.output
    # It waited its grace period for the stage that could not finish, and not much longer.
    assert GRACE_S - 0.5 <= took < GRACE_S + 20, took
    assert processes.pids_with(up.marker) == []

    again = up.start()
    run = up.run()
    assert stages(run) == {
        "slow": ("cancelled", 1, "controller stopped"),
        "short": ("succeeded", 1, ""),
        "later": ("skipped", 1, "skipped: needs slow"),
    }
    assert run["status"] == "cancelled" and run["finished_at"] is not None
    assert "cut off" not in again.output  # recorded by the stop itself, nothing left for the start
    time.sleep(2)  # longer than the lease TTL: nothing runs it again behind our back
    assert stages(up.run())["slow"] == ("cancelled", 1, "controller stopped")
    assert processes.pids_with(up.marker) == []


async def test_up_second_sigint_stops_at_once_without_a_traceback(up: Up) -> None:
    proc = up.start_run()
    run_id = up.run()["id"]
    # A browser watching the run: its open socket must not hold the stop up.
    async with connect_up(up) as page:
        await send(page, op="watch", topic="run", run_id=run_id)
        await send(page, op="ping")
        await receive_until(page, lambda m: m["type"] == "error")
        proc.signal(signal.SIGINT)
        wait_for(lambda: "buildit: stopping: finishing" in proc.output, 10, "the first answer")
        sent = time.monotonic()
        proc.signal(signal.SIGINT)
        code = proc.wait(30)
        took = time.monotonic() - sent
    assert code == 1, proc.output
    assert "buildit: stopping now" in proc.output
    assert (
        "stopping at the second Ctrl-C: cancelling 2 stages still running (controller stopped)" in proc.output
    )
    assert "Traceback" not in proc.output and "CancelledError" not in proc.output, proc.output
    assert took < 10, took  # a hang guard: it does not wait for the grace period (6 s) or the stages
    assert processes.pids_with(up.marker) == []

    up.start()
    assert stages(up.run()) == {
        "slow": ("cancelled", 1, "controller stopped"),
        "short": ("cancelled", 1, "controller stopped"),
        "later": ("skipped", 1, "skipped: needs slow"),
    }


def connect_up(up: Up) -> Any:
    """A /ws connection to the `buildit up` under test, signed in with its admin's key."""
    probe = Controller.__new__(Controller)
    probe.http_port, probe.api_key = up.port, up.key
    return connect(probe)


def test_up_killed_records_its_cut_off_stages_at_the_next_start(up: Up) -> None:
    proc = up.start_run()
    proc.signal(signal.SIGKILL)
    proc.wait(30)
    # The agent's reaper ends the stage's processes when the agent dies.
    assert wait_for(lambda: processes.pids_with(up.marker) == [], 10, "the stage's processes gone")

    again = up.start()
    assert "buildit: 2 stages cut off when buildit up last stopped ('short', 'slow'): controller stopped" in (
        again.output
    ), again.output
    run = up.run()
    assert stages(run)["slow"] == ("cancelled", 1, "controller stopped")
    assert stages(run)["short"] == ("cancelled", 1, "controller stopped")
    assert run["status"] == "cancelled"
    time.sleep(2)
    assert stages(up.run())["slow"] == ("cancelled", 1, "controller stopped")


# ------------------------------------------------------------------ buildit controller, buildit agent


def test_controller_stop_leaves_agents_stages_running_and_they_report_when_it_is_back(tmp_path: Path) -> None:
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env={"BUILDIT_LEASE_TTL": "30"})
    controller.start()
    agent = Agent(tmp_path, controller, "worker")
    try:
        pipeline = controller.create_pipeline(
            'pipeline "p"\nstage "s" { run "echo begun; sleep 4; echo ended"; }\n'
        )
        number = controller.trigger(pipeline)
        wait_for(
            lambda: controller.stage(pipeline, number, "s")["status"] == "running", 30, "the stage running"
        )
        assert controller.proc is not None
        sent = time.monotonic()
        controller.proc.signal(signal.SIGINT)
        assert controller.proc.wait(30) == 0, controller.proc.output
        took = time.monotonic() - sent
        output = controller.proc.output
        assert (
            "buildit: stopping the controller: agents keep running 1 stage and report when it is back"
            in output
        )
        assert output.rstrip().endswith("buildit: stopped") and "Traceback" not in output, output
        assert took < 10, took  # a hang guard: prompt, it waits for no stage

        controller.start()
        run = controller.wait_run(pipeline, number, 60)
        [stage] = run["stages"]
        assert (run["status"], stage["attempt"], stage["agent"]) == ("succeeded", 1, "worker")
        assert controller.log(pipeline, number, "s").splitlines()[-2:] == ["begun", "ended"]
    finally:
        agent.stop()
        controller.stop()


def test_an_agent_stopped_while_its_controller_is_down_gives_up_after_its_bound(tmp_path: Path) -> None:
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env={"BUILDIT_LEASE_TTL": "30"})
    controller.start()
    agent = Agent(tmp_path, controller, "worker", env={"BUILDIT_AGENT_REPORT_WAIT": "3"})
    again: Agent | None = None
    try:
        pipeline = controller.create_pipeline(
            'pipeline "p"\nstage "s" { run "echo begun; sleep 3; echo ended"; }\n'
        )
        number = controller.trigger(pipeline)
        wait_for(
            lambda: controller.stage(pipeline, number, "s")["status"] == "running", 30, "the stage running"
        )
        controller.stop()
        agent.proc.signal(signal.SIGTERM)
        assert agent.proc.wait(60) == 1, agent.proc.output
        output = agent.proc.output
        address = controller.grpc_address
        assert (
            f"(stage 's', succeeded): the controller at {address} is unreachable; the agent is stopping: "
            "waiting up to 3s to report it, then keeping it for the next start" in output
        ), output
        kept = agent.state_dir / "pending-reports.json"
        assert f"result kept in {kept} for the next start" in output
        assert (
            f"buildit agent: stopped with 1 stage result(s) the controller at {address} did not take"
            in output
        )
        assert (kept.stat().st_mode & 0o777) == 0o600
        assert "ended" in kept.read_text()

        controller.start()
        again = Agent(tmp_path, controller, "worker")
        run = controller.wait_run(pipeline, number, 60)
        [stage] = run["stages"]
        assert (run["status"], stage["attempt"], stage["agent"]) == ("succeeded", 1, "worker")
        assert controller.log(pipeline, number, "s").splitlines()[-2:] == ["begun", "ended"]
        wait_for(lambda: not kept.exists(), 10, "the kept result forgotten once reported")
        assert "reporting 1 stage result(s) kept when this agent last stopped" in again.proc.output
    finally:
        agent.stop()
        if again is not None:
            again.stop()
        controller.stop()


def test_an_agent_stopping_gives_up_an_upload_to_a_down_controller_after_its_bound(tmp_path: Path) -> None:
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env={"BUILDIT_LEASE_TTL": "30"})
    controller.start()
    agent = Agent(tmp_path, controller, "worker", env={"BUILDIT_AGENT_REPORT_WAIT": "2"})
    again: Agent | None = None
    try:
        pipeline = controller.create_pipeline(
            'pipeline "p"\nstage "s" { run "sleep 3; echo made > out.txt"; artifacts "out.txt"; }\n'
        )
        number = controller.trigger(pipeline)
        wait_for(
            lambda: controller.stage(pipeline, number, "s")["status"] == "running", 30, "the stage running"
        )
        controller.stop()
        agent.proc.signal(signal.SIGTERM)
        assert agent.proc.wait(60) == 1, agent.proc.output  # not retrying the upload for ever
        kept = agent.state_dir / "pending-reports.json"
        assert f"result kept in {kept} for the next start" in agent.proc.output, agent.proc.output

        controller.start()
        again = Agent(tmp_path, controller, "worker")
        run = controller.wait_run(pipeline, number, 60)
        [stage] = run["stages"]
        address = controller.grpc_address
        assert (stage["status"], stage["attempt"]) == ("error", 1), stage
        assert stage["message"] == (
            f"cannot upload artifact 'out.txt': the controller at {address} was unreachable while the "
            "agent was stopping"
        )
    finally:
        agent.stop()
        if again is not None:
            again.stop()
        controller.stop()
