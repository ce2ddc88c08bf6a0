"""`buildit up`: controller + embedded agent in one process, as `make run` starts it."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
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
    # A second start reuses the same data: the token and the pipelines persist, nothing is re-added,
    # and --trigger runs nothing: hello's file has a run already.
    again = Proc(
        [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local", "--trigger", "hello"],
        env,
        tmp_path,
    )
    try:
        wait_for(lambda: "last run:" in again.output, 60, "the second banner")
        assert re.search(r"last run:\s+hello run 1 \(succeeded\): http://\S+/runs/1$", again.output)
        assert f"registration token:  {token}" in again.output
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", again.output).group(1))  # type: ignore[union-attr]
        key = admin_key(f"http://127.0.0.1:{port}", tmp_path / ".buildit")
        assert len(get(port, key, "/api/v1/pipelines")["pipelines"]) == 5
        assert [r["number"] for r in get(port, key, f"/api/v1/pipelines/{hello}/runs")["runs"]] == [1]
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


def _sign_in(base_url: str, password: str) -> urllib.request.OpenerDirector:
    """A browser-like session: the login page's form, posted with its CSRF token."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base_url}/login", timeout=10).read().decode()
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = {"_csrf_token": token, "username": "admin", "password": password, "next": "/"}
    posted = urllib.parse.urlencode(form).encode()
    opener.open(urllib.request.Request(f"{base_url}/login", data=posted), timeout=10)
    assert any(c.name == "buildit_session" for c in jar)
    return opener


def test_make_run_twice_makes_one_run_and_ends_with_a_link_to_its_page(tmp_path: Path) -> None:
    """What `make run` does, twice on the same data dir: scripts/demo-repo.sh syncs the demo
    repository (one commit, then none), `buildit up --trigger demo-repo` runs its head once. Each
    start's output ends with the banner, whose last line links to the run's UI page."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    demo = tmp_path / ".buildit" / "demo-repo"
    script = str(ROOT / "scripts" / "demo-repo.sh")
    args = [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local"]
    args += ["--pipelines", str(ROOT / "examples"), "--repo", str(demo), "--trigger", "demo-repo"]

    def start(label: str) -> str:
        """One `make run`: the run page's path the banner links to, once checked."""
        sync = [script, "sync", str(demo)]
        synced = subprocess.run(sync, cwd=ROOT, env=env, capture_output=True, text=True)
        assert synced.returncode == 0 and synced.stdout == synced.stderr == "", synced
        count = ["git", "-C", str(demo), "rev-list", "--count", "HEAD"]
        assert subprocess.run(count, capture_output=True, text=True).stdout.strip() == "1"
        proc = Proc(args, env, tmp_path)
        try:
            wait_for(lambda: re.search(r"(triggered|last run):.*/runs/\d+$", proc.output), 60, "the banner")
            last = proc.lines[-1]
            link = rf"  {label}\s+demo-repo run 1 \(.+\): http://127\.0\.0\.1:\d+/pipelines/\S+/runs/1"
            assert re.fullmatch(link, last), proc.output
            page = last.rsplit(" ", 1)[1]
            base, path = page.split("/pipelines/")
            password = (tmp_path / ".buildit" / "initial-admin-password").read_text().strip()
            with _sign_in(base, password).open(page, timeout=10) as answer:
                assert answer.status == 200 and "demo-repo" in answer.read().decode()
            key = admin_key(base, tmp_path / ".buildit")
            port = int(base.rsplit(":", 1)[1])
            runs = f"/api/v1/pipelines/{path.split('/')[0]}/runs"
            wait_for(lambda: get(port, key, f"{runs}/1")["status"] == "succeeded", 60, "the demo run")
            time.sleep(1.0)  # the watch's catch-up sync (0.5 s after start) must find nothing to run
            assert [r["number"] for r in get(port, key, runs)["runs"]] == [1]
            # Quiet: nothing after the banner, though the run went from queued to succeeded meanwhile.
            assert proc.lines[-1] == last, proc.output
            return path
        finally:
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.output

    first = start("triggered:")
    assert start("last run:") == first  # the same run's page (each start got its own port)


def test_the_demo_repository_gets_a_commit_only_when_its_example_changed(tmp_path: Path) -> None:
    """scripts/demo-repo.sh sync: made once; a commit of examples/dag.kdl only after it changed;
    the user's own commits in the demo repository stay as they are."""
    checkout = tmp_path / "checkout"
    (checkout / "examples").mkdir(parents=True)
    example = checkout / "examples" / "dag.kdl"
    example.write_text((ROOT / "examples" / "dag.kdl").read_text())
    demo = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}

    def sync() -> list[str]:
        script = [str(ROOT / "scripts" / "demo-repo.sh"), "sync", str(demo)]
        done = subprocess.run(script, cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout == done.stderr == "", done
        log = ["git", "-C", str(demo), "log", "--format=%s"]
        return subprocess.run(log, capture_output=True, text=True, check=True).stdout.splitlines()

    assert sync() == ["demo: initial pipeline"]
    assert sync() == ["demo: initial pipeline"]
    (demo / "README").write_text("mine\n")
    (demo / ".buildit.kdl").write_text(example.read_text() + "// my change\n")
    mine = ["git", "-C", str(demo), "commit", "-qam", "my change"]
    subprocess.run(
        mine,
        env={
            **env,
            "GIT_AUTHOR_NAME": "u",
            "GIT_AUTHOR_EMAIL": "u@x",
            "GIT_COMMITTER_NAME": "u",
            "GIT_COMMITTER_EMAIL": "u@x",
        },
        check=True,
    )
    assert sync() == ["my change", "demo: initial pipeline"]  # left alone
    assert (demo / "README").read_text() == "mine\n"
    example.write_text(example.read_text() + "// a new example\n")
    assert sync() == [
        "demo: update the pipeline from examples/dag.kdl",
        "my change",
        "demo: initial pipeline",
    ]
    assert (demo / ".buildit.kdl").read_text() == example.read_text()
    assert sync()[0] == "demo: update the pipeline from examples/dag.kdl"
