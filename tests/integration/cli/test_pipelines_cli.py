"""`buildit pipeline list|show|apply|rm` against a real controller, and `buildit up --pipelines`
updating the pipelines whose file changed between two starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli.conftest import buildit
from tests.integration.fleet.harness import BUILDIT, Controller, Proc, wait_for
from tests.integration.triggers.gitrepos import make_repo
from tests.support.credentials import admin_key

V1 = 'pipeline "app"\nstage "a" { run "echo one"; }\n'
V2 = 'pipeline "app"\nstage "a" { run "echo two"; }\nstage "b" { run "echo b"; }\n'


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    started = Controller(tmp_path, f"sqlite:///{tmp_path}/cli.db").start()
    try:
        yield started
    finally:
        started.stop()


def cli(controller: Controller, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"BUILDIT_URL": controller.base_url, "BUILDIT_TOKEN": controller.api_key}
    return buildit(*args, cwd=cwd, env=env)


def test_apply_creates_updates_and_leaves_alone_show_lists_and_rm_asks(
    controller: Controller, tmp_path: Path
) -> None:
    file = tmp_path / "app.kdl"
    file.write_text(V1)
    done = cli(controller, "pipeline", "apply", str(file))
    assert (done.returncode, done.stdout) == (0, f"created pipeline app from {file}\n"), done.stderr
    done = cli(controller, "pipeline", "apply", str(file))
    assert done.stdout == f"unchanged pipeline app ({file}, version 1)\n", done.stderr
    file.write_text(V2)
    done = cli(controller, "pipeline", "apply", str(file))
    assert done.stdout == f"updated pipeline app from {file} (version 2)\n", done.stderr

    # An invalid file: its diagnostics, exit 1, nothing sent (the other file is not applied either).
    bad, other = tmp_path / "bad.kdl", tmp_path / "other.kdl"
    bad.write_text('pipeline "app"\nstage "a" { run "x" }\n')
    other.write_text('pipeline "other"\nstage "a" { run "x"; }\n')
    done = cli(controller, "pipeline", "apply", str(other), str(bad))
    assert done.returncode == 1 and f"{bad}:2:21: error:" in done.stderr, done.stderr
    assert "bad.kdl is invalid (1 problem(s)): nothing changed" in done.stderr

    listing = cli(controller, "pipeline", "list")
    assert listing.returncode == 0 and re.search(r"^app\s+v2\s+0 runs\s+stored", listing.stdout, re.M), (
        listing
    )
    assert "other" not in listing.stdout
    assert cli(controller, "pipeline", "show", "app").stdout == V2
    assert cli(controller, "pipeline", "show", "app", "--version", "1").stdout == V1

    refused = cli(controller, "pipeline", "rm", "app")  # no terminal to ask on
    assert refused.returncode == 2 and "pass --yes to confirm" in refused.stderr, refused
    assert cli(controller, "pipeline", "show", "app").returncode == 0
    done = cli(controller, "pipeline", "rm", "app", "--yes")
    assert done.returncode == 0 and done.stdout.startswith("deleted pipeline app with its 0 run(s)"), done
    missing = cli(controller, "pipeline", "rm", "app", "--yes")
    assert missing.returncode == 1 and "no pipeline named or with id 'app'" in missing.stderr, missing
    assert (
        "no pipelines: add one with `buildit pipeline apply FILE`"
        in cli(controller, "pipeline", "list").stdout
    )


def test_apply_to_a_watched_repositorys_pipeline_says_to_push(controller: Controller, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app", {".buildit.kdl": V1})
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": str(repo)})
    assert status == 201, body
    file = tmp_path / "app.kdl"
    file.write_text(V2)
    done = cli(controller, "pipeline", "apply", str(file))
    assert done.returncode == 1 and "change that file and push a commit" in done.stderr, done.stderr


def _up(workdir: Path, examples: Path) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    args = [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local"]
    proc = Proc([*args, "--pipelines", str(examples)], env, workdir)
    wait_for(lambda: "embedded agent" in proc.output or proc.proc.poll() is not None, 60, "the banner")
    return proc


def _stop(proc: Proc) -> None:
    proc.signal(signal.SIGTERM)
    proc.wait(60)


def test_up_updates_the_pipelines_whose_file_changed_and_says_so(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "a.kdl").write_text('pipeline "a"\nstage "s" { run "echo a"; }\n')
    (examples / "b.kdl").write_text('pipeline "b"\nstage "s" { run "echo b"; }\n')
    first = _up(tmp_path, examples)
    _stop(first)
    assert re.search(r"pipelines added:\s+a, b", first.output), first.output
    changed = 'pipeline "b"\nstage "s" { run "echo b, changed"; }\nstage "t" { run "echo t"; }\n'
    (examples / "b.kdl").write_text(changed)
    second = _up(tmp_path, examples)
    try:
        assert f"updated pipeline b from {examples / 'b.kdl'} (version 2)" in second.output, second.output
        assert "updated pipeline a" not in second.output and "pipelines added" not in second.output
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", second.output)
        assert port, second.output
        base = f"http://127.0.0.1:{port.group(1)}"
        key = admin_key(base, tmp_path / ".buildit")
        listing = buildit("pipeline", "show", "b", env={"BUILDIT_URL": base, "BUILDIT_TOKEN": key})
        assert listing.stdout == changed, listing
    finally:
        _stop(second)
