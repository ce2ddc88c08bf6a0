"""The daily verbs end to end: `buildit runs`, `logs [-f]`, `cancel`, `trigger --follow` and
`repo add` (what happens next, `--run-now`), each the real console script against a real
controller and agent (tests/integration/fleet/harness.py) and real Git repositories.

One controller and agent serve the whole module (SQLite; the listing query itself is tested on
both engines in tests/integration/runs/test_listing.py); each test uses pipelines of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet.harness import BUILDIT, Agent, Controller, Proc, wait_for
from tests.integration.triggers.gitrepos import commit, make_repo

GREEN = """pipeline "green"
stage "build" { run "echo green-build-ok"; }
stage "check" needs="build" { run "echo green-check-ok"; }
"""
RED = """pipeline "red"
stage "prep" { run "echo preparing"; }
stage "test" needs="prep" { run "echo first-failing-line" "echo last-words-before-failing" "exit 7"; }
stage "after" needs="test" { run "echo never"; }
"""
HANG = """pipeline "hang-N"
stage "wait" { run "echo waiting-started" "sleep 120"; }
"""


class Fleet:
    """The module's controller and agent, and how the tests run the CLI against them."""

    def __init__(self, controller: Controller, agent: Agent, home: Path) -> None:
        self.controller = controller
        self.agent = agent
        self.home = home  # cwd of every CLI call: no .buildit/ here, so no recorded address

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
        env.update(
            BUILDIT_URL=self.controller.base_url,
            BUILDIT_TOKEN=self.controller.api_key,
            XDG_CONFIG_HOME=str(self.home / "config"),
        )
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BUILDIT, *args],
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def background(self, *args: str) -> Proc:
        """The CLI as a running process whose output is collected as it comes."""
        return Proc([BUILDIT, *args], self.env(), self.home)

    def pipeline(self, config: str) -> str:
        return self.controller.create_pipeline(config)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("daily")
    controller = Controller(work, f"sqlite:///{work / 'buildit.db'}").start()
    agent = Agent(work, controller, "worker", capacity=4)
    try:
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")
        home = work / "home"
        home.mkdir()
        yield Fleet(controller, agent, home)
    finally:
        agent.stop()
        controller.stop()


def finished(fleet: Fleet, pipeline_id: str, number: int) -> dict[str, Any]:
    return fleet.controller.wait_run(pipeline_id, number, timeout=60)


# ------------------------------------------------------------------ trigger --follow


def test_trigger_follow_exits_0_for_a_run_that_succeeds(fleet: Fleet) -> None:
    pipeline = fleet.pipeline(GREEN)
    done = fleet.cli("trigger", "green", "--follow")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "green run 1:" in out.splitlines()[0]
    assert "check" in out and "✔ succeeded" in out
    assert out.strip().splitlines()[-1].startswith("✔ green#1 succeeded")
    assert finished(fleet, pipeline, 1)["status"] == "succeeded"


def test_trigger_follow_exits_1_and_shows_the_failing_stage_last_lines(fleet: Fleet) -> None:
    fleet.pipeline(RED)
    done = fleet.cli("trigger", "red", "-f")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "test" in out and "✘ failed" in out and 'command 3 of 3 failed: "exit 7" exited with 7' in out
    # The failing stage's last lines, under a header naming it, and where the full log is.
    tail = out[out.index("── test:") :]
    assert "first-failing-line" in tail and "last-words-before-failing" in tail
    assert "full log: buildit logs red#1 test" in tail
    assert "after" in out and "skipped" in out  # what the failure blocked is shown too
    assert out.strip().splitlines()[-1].startswith("✘ red#1 failed")


def test_trigger_follow_exits_3_when_the_run_is_cancelled(fleet: Fleet) -> None:
    pipeline = fleet.pipeline(HANG.replace("N", "1"))
    follow = fleet.background("trigger", "hang-1", "--follow")
    try:
        wait_for(lambda: "running on worker" in follow.output, 60, "the stage running")
        cancel = fleet.cli("cancel", "hang-1#1", "--reason", "not today")
        assert cancel.returncode == 0, cancel.stderr
        assert cancel.stdout.startswith(("cancelling hang-1#1", "cancelled hang-1#1")), cancel.stdout
        assert follow.wait(60) == 3, follow.output
    finally:
        follow.stop()
    assert "⊘ hang-1#1 cancelled" in follow.output
    run = finished(fleet, pipeline, 1)
    assert run["status"] == "cancelled"
    assert "not today" in run["stages"][0]["message"]


# ------------------------------------------------------------------ cancel


def test_cancel_stops_a_running_run_and_refuses_a_finished_one(fleet: Fleet) -> None:
    pipeline = fleet.pipeline(HANG.replace("N", "2"))
    number = fleet.controller.trigger(pipeline)
    wait_for(lambda: fleet.controller.stage(pipeline, number, "wait")["status"] == "running", 60, "running")
    done = fleet.cli("cancel", "hang-2")  # PIPELINE alone: its newest run
    assert done.returncode == 0, done.stderr
    assert "hang-2#1" in done.stdout
    assert finished(fleet, pipeline, number)["status"] == "cancelled"
    again = fleet.cli("cancel", "hang-2#1")
    assert again.returncode == 1
    assert "already finished (cancelled)" in again.stderr
    # A reason that is not one line is refused, and changes nothing (the run is finished anyway).
    bad = fleet.cli("cancel", "hang-2#1", "--reason", "two\nlines")
    assert bad.returncode == 1 and bad.stderr.startswith("buildit: error: ")
    # The REST door: the body is optional ("{}" as the UI sends it, or none), its reason a string.
    path = f"/api/v1/pipelines/{pipeline}/runs/{number}/cancel"
    for body in ({}, None, {"reason": "late"}):
        status, answer, _ = fleet.controller.request("POST", path, body)
        assert status == 409 and "already finished" in answer["detail"], (body, answer)
    status, answer, _ = fleet.controller.request("POST", path, {"reason": 5})
    assert status == 400, answer


# ------------------------------------------------------------------ logs


def test_logs_prints_a_stored_log_and_names_what_is_wrong(fleet: Fleet) -> None:
    pipeline = fleet.pipeline(RED.replace('"red"', '"red-logs"'))
    number = fleet.controller.trigger(pipeline)
    finished(fleet, pipeline, number)
    done = fleet.cli("logs", "red-logs#1", "test")
    assert done.returncode == 0, done.stderr
    assert "first-failing-line\n" in done.stdout and "last-words-before-failing\n" in done.stdout
    # As a terminal shows it: BuildIt's header and closing lines without their markers.
    assert "\x1b_" not in done.stdout
    assert done.stdout.endswith('$ exit 7\nbuildit: command 3 of 3 failed: "exit 7" exited with 7\n')
    cases = {
        ("red-logs#1", "nope"): "has no stage 'nope' (its stages: prep, test, after)",
        ("red-logs#9", "test"): "red-logs has no run 9 (its newest is #1",
        ("red-logs#x", "test"): "the part after '#' must be a run number",
        ("no-such#1", "test"): "no repository or pipeline named or with id 'no-such'",
    }
    for (run, stage), message in cases.items():
        wrong = fleet.cli("logs", run, stage)
        assert wrong.returncode in (1, 2), (run, stage, wrong.stderr)
        assert message in wrong.stderr, (run, stage, wrong.stderr)


def test_logs_follow_prints_lines_as_they_arrive_and_exits_with_the_stage_result(
    fleet: Fleet, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    pipeline = fleet.pipeline(
        'pipeline "gated"\n'
        'stage "work" {\n'
        '  run "echo before-the-gate" '
        f'"for i in $(seq 600); do [ -f {gate} ] && break; sleep 0.1; done" '
        '"echo after-the-gate"\n'
        "}\n"
    )
    number = fleet.controller.trigger(pipeline)
    follow = fleet.background("logs", "gated#1", "work", "-f")
    try:
        wait_for(lambda: "before-the-gate" in follow.output, 60, "the first line while following")
        assert follow.proc.poll() is None, follow.output  # still following: the stage waits
        assert "after-the-gate" not in follow.output
        gate.touch()
        assert follow.wait(60) == 0, follow.output
    finally:
        follow.stop()
    lines = follow.lines
    assert lines.index("before-the-gate") < lines.index("after-the-gate")
    assert "buildit: gated#1 work: succeeded" in follow.output
    assert finished(fleet, pipeline, number)["status"] == "succeeded"


def test_logs_follow_resumes_after_a_controller_restart_without_gap_or_duplicate(tmp_path: Path) -> None:
    # Its own controller (restarted here), with leases that outlive the restart: the stage goes on.
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env={"BUILDIT_LEASE_TTL": "60"})
    controller.start()
    agent = Agent(tmp_path, controller, "survivor", capacity=1)
    gate = tmp_path / "gate"
    home = tmp_path / "home"
    home.mkdir()
    fleet = Fleet(controller, agent, home)
    try:
        pipeline = fleet.pipeline(
            'pipeline "restart"\n'
            'stage "work" {\n'
            '  run "echo before-the-restart" '
            f'"for i in $(seq 900); do [ -f {gate} ] && break; sleep 0.1; done" '
            '"echo after-the-restart"\n'
            "}\n"
        )
        controller.trigger(pipeline)
        follow = fleet.background("logs", "restart#1", "work", "-f")
        try:
            wait_for(lambda: "before-the-restart" in follow.output, 60, "the first line while following")
            controller.stop()
            wait_for(lambda: "reconnecting" in follow.output, 30, "the CLI noticing")
            controller.start()  # on the same ports
            gate.touch()
            assert follow.wait(90) == 0, follow.output
        finally:
            follow.stop()
        assert follow.lines.count("before-the-restart") == 1, follow.output
        assert follow.lines.count("after-the-restart") == 1, follow.output
    finally:
        agent.stop()
        controller.stop()


def test_logs_follow_exits_1_for_a_stage_that_fails(fleet: Fleet) -> None:
    pipeline = fleet.pipeline(RED.replace('"red"', '"red-follow"'))
    number = fleet.controller.trigger(pipeline)
    done = fleet.cli("logs", f"red-follow#{number}", "test", "--follow")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "last-words-before-failing" in done.stdout
    assert "\x1b_" not in done.stdout and "buildit: command 3 of 3 failed" in done.stdout
    assert "red-follow#1 test: failed" in done.stderr


# ------------------------------------------------------------------ runs


def test_runs_lists_recent_runs_filtered_by_pipeline_and_status(fleet: Fleet) -> None:
    green = fleet.pipeline(GREEN.replace('"green"', '"list-green"'))
    red = fleet.pipeline(RED.replace('"red"', '"list-red"'))
    for pipeline in (green, red, green):
        finished(fleet, pipeline, fleet.controller.trigger(pipeline))
    done = fleet.cli("runs", "--limit", "200")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["RUN", "STATUS", "BRANCH", "COMMIT", "STARTED", "DURATION"]
    mine = [r.split() for r in rows if r.startswith("list-")]
    assert [r[:3] for r in mine] == [
        ["list-green#2", "succeeded", "main"],
        ["list-red#1", "failed", "main"],
        ["list-green#1", "succeeded", "main"],
    ]
    assert all(r[3] == "—" and r[5] == "ago" for r in mine), mine  # no commit; started "Ns ago"
    only_red = fleet.cli("runs", "list-red", "--status", "failed").stdout.splitlines()
    assert [r.split()[0] for r in only_red[1:]] == ["list-red#1"]
    none = fleet.cli("runs", "list-green", "--status", "failed")
    assert none.returncode == 0 and "no runs matching those filters" in none.stdout
    limited = fleet.cli("runs", "list-green", "-n", "1").stdout
    assert "list-green#2" in limited and "list-green#1" not in limited and "1 of 2" in limited
    bad = fleet.cli("runs", "--status", "green")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    unknown = fleet.cli("runs", "no-such-pipeline")
    assert unknown.returncode == 1 and "no repository or pipeline named" in unknown.stderr


def test_the_runs_listing_route_checks_its_input(fleet: Fleet) -> None:
    request = fleet.controller.request
    for query, detail in (
        ("status=bogus", "'status' must be one of"),
        ("limit=0", "'limit' must be between 1 and 200"),
        ("page=0", "'page' must be between"),
        ("target=", "name the repository or pipeline"),
    ):
        status, body, _ = request("GET", f"/api/v1/runs?{query}")
        assert status == 400 and detail in body["detail"], (query, body)
    status, body, _ = request("GET", "/api/v1/runs?target=no-such-thing")
    assert status == 404, body


# ------------------------------------------------------------------ repo add


def test_repo_add_says_what_happens_next_or_runs_now(fleet: Fleet, tmp_path: Path) -> None:
    with_file = make_repo(tmp_path / "with-file", {".buildit.kdl": GREEN.replace('"green"', '"ignored"')})
    done = fleet.cli("repo", "add", str(with_file), "--name", "next-steps")
    assert done.returncode == 0, done.stderr
    assert "push a commit or run `buildit trigger next-steps`" in done.stdout
    listed = fleet.controller.request("GET", "/api/v1/runs?target=next-steps")[1]
    assert listed["total"] == 0  # registering built nothing

    without = make_repo(tmp_path / "without-file")
    plain = fleet.cli("repo", "add", str(without), "--name", "no-file-yet")
    assert plain.returncode == 0, plain.stderr
    assert "has no .buildit.kdl on its default branch yet: commit one" in plain.stdout
    refused = fleet.cli("repo", "add", str(make_repo(tmp_path / "empty-2")), "--name", "x2", "--run-now")
    assert refused.returncode == 1 and "--run-now: nothing to run" in refused.stderr

    now = make_repo(tmp_path / "run-now", {".buildit.kdl": GREEN})
    commit(now, {"more.txt": "x\n"}, "second")
    ran = fleet.cli("repo", "add", str(now), "--name", "ran-now", "--run-now", "--follow")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "ran-now run 1:" in ran.stdout and "✔ ran-now#1 succeeded" in ran.stdout
    usage = fleet.cli("repo", "add", str(now), "--follow")
    assert usage.returncode == 2 and "--follow goes with --run-now" in usage.stderr
