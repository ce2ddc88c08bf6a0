"""`buildit up`: controller + embedded agent in one process, as `make run` starts it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.fleet.harness import BUILDIT, Proc, wait_for
from tests.support.credentials import admin_key

ROOT = Path(__file__).resolve().parents[3]


def get(port: int, key: str, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_up_registers_examples_runs_hello_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    proc = Proc(
        [
            BUILDIT,
            "up",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--pipelines",
            str(ROOT / "examples"),
            "--trigger",
            "hello",
            "--executor",
            "local",
        ],
        env,
        tmp_path,
    )
    try:
        wait_for(lambda: "triggered:" in proc.output, 60, "the banner")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", proc.output).group(1))  # type: ignore[union-attr]
        key = admin_key(f"http://127.0.0.1:{port}", tmp_path / ".buildit")
        token = re.search(r"registration token:\s+(\S+)", proc.output).group(1)  # type: ignore[union-attr]
        assert (tmp_path / ".buildit" / "buildit.db").exists()
        assert (tmp_path / ".buildit" / "registration-token").read_text().strip() == token
        pipelines = {p["name"]: p["id"] for p in get(port, key, "/api/v1/pipelines")["pipelines"]}
        assert {"hello", "dag", "variables", "artifacts", "docker"} <= set(pipelines)
        hello = pipelines["hello"]
        run = wait_for(
            lambda: (r := get(port, key, f"/api/v1/pipelines/{hello}/runs/1"))["status"] == "succeeded" and r,
            30,
            "the hello run",
        )
        assert [s["agent"] for s in run["stages"]] == ["local", "local"]
        agents = get(port, key, "/api/v1/agents")["agents"]
        assert [(a["name"], a["status"]) for a in agents] == [("local", "online")]
    finally:
        proc.signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, proc.output
    # A second start reuses the same data: the token and the pipelines persist, nothing is re-added.
    again = Proc(
        [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local"], env, tmp_path
    )
    try:
        wait_for(lambda: "embedded agent" in again.output, 60, "the second banner")
        assert f"registration token:  {token}" in again.output
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", again.output).group(1))  # type: ignore[union-attr]
        key = admin_key(f"http://127.0.0.1:{port}", tmp_path / ".buildit")
        assert len(get(port, key, "/api/v1/pipelines")["pipelines"]) == 5
        assert get(port, key, f"/api/v1/pipelines/{hello}/runs/1")["status"] == "succeeded"
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait(30) == 0, again.output


def test_up_watches_the_demo_repository_as_make_run_does(tmp_path: Path) -> None:
    """`make run`: scripts/demo-repo.sh makes a repository, `buildit up --repo` watches it, and the
    script's commit (made once the controller answers) starts a run that succeeds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    demo = tmp_path / ".buildit" / "demo-repo"
    script = str(ROOT / "scripts" / "demo-repo.sh")
    subprocess.run([script, "create", str(demo)], cwd=ROOT, env=env, check=True, timeout=60)
    proc = Proc(
        [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local", "--repo", str(demo)],
        env,
        tmp_path,
    )
    try:
        wait_for(lambda: "watching:" in proc.output, 60, "the banner")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", proc.output).group(1))  # type: ignore[union-attr]
        key = admin_key(f"http://127.0.0.1:{port}", tmp_path / ".buildit")
        [repo] = get(port, key, "/api/v1/repos")["repos"]
        assert repo["name"] == "demo-repo" and repo["status"] == "ok"
        done = subprocess.run(
            [script, "commit", str(demo), f"http://127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        pipeline = repo["pipeline_id"]
        run = wait_for(
            lambda: (
                (r := get(port, key, f"/api/v1/pipelines/{pipeline}/runs")["runs"])
                and r[0]["status"] == "succeeded"
                and r[0]
            ),
            60,
            "the demo run",
        )
        assert run["trigger"] == "watch" and run["commit_message"] == "demo: a commit made by make run"
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.output
