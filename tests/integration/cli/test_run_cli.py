"""`buildit run` end to end: real processes, real Git repositories, real signals, real Docker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cli.conftest import BUILDIT, buildit, git
from tests.integration.executors.test_local import pids_with_marker

ROOT = Path(__file__).resolve().parents[3]


def stage_lines(output: str, stage: str) -> list[str]:
    """The output lines of one stage, without the `[stage]` prefix and BuildIt's own notes."""
    prefix = f"[{stage}]"
    lines = []
    for line in output.splitlines():
        if line.startswith(prefix):
            text = line[len(prefix) :].lstrip(" ")
            if not text.startswith(("▶", "✔", "✘", "⊘", "–", "⏱", "!", "·", "$ ")):
                lines.append(text)
    return lines


def summary_row(output: str, stage: str) -> list[str]:
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == stage and not line.startswith("["):
            return parts
    raise AssertionError(f"no summary row for {stage}:\n{output}")


def test_hello_example_runs_with_summary() -> None:
    done = buildit("run", str(ROOT / "examples" / "hello.kdl"), "--executor", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert stage_lines(done.stdout, "greet")[0] == "Hello from BuildIt, stage greet of pipeline hello"
    assert stage_lines(done.stdout, "count") == ["hi 1", "hi 2", "hi 3"]
    assert summary_row(done.stdout, "greet")[1:3] == ["✔", "succeeded"]
    assert "2 stages: 2 succeeded" in done.stdout
    # Order: "count" needs "greet", so it starts only after greet finished.
    out = done.stdout
    assert out.index("[greet] ✔ succeeded") < out.index("[count] ▶ started")


@pytest.mark.parametrize("name", ["dag.kdl", "artifacts.kdl"])
def test_runnable_examples_succeed(name: str) -> None:
    done = buildit("run", str(ROOT / "examples" / name), "--executor", "local", "--jobs", "3")
    assert done.returncode == 0, done.stdout + done.stderr


def test_variables_example_with_secret_is_masked() -> None:
    done = buildit(
        "run",
        str(ROOT / "examples" / "variables.kdl"),
        "--secret",
        "API_TOKEN=s3cr3t-value",
        "--branch",
        "main",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "s3cr3t-value" not in done.stdout + done.stderr
    assert "token is ***; header is ***" in done.stdout
    assert stage_lines(done.stdout, "only-on-main") == ["deploying from main"]


def test_when_branch_skips_without_failing_the_run() -> None:
    done = buildit(
        "run",
        str(ROOT / "examples" / "variables.kdl"),
        "--secret",
        "API_TOKEN=x1y2z3",
        "--branch",
        "feature/x",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary_row(done.stdout, "only-on-main")[1:3] == ["–", "skipped"]


def test_missing_secret_is_a_clear_error() -> None:
    done = buildit("run", str(ROOT / "examples" / "variables.kdl"))
    assert done.returncode == 1
    assert "uses secret 'API_TOKEN', which was not provided" in done.stderr
    assert "--secret API_TOKEN=VALUE" in done.stderr


def test_secret_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text('pipeline "p"\nstage "s" { run "echo got ${secrets.TOKEN}"; }\n')
    done = buildit("run", str(f), "--secret", "TOKEN", env={"TOKEN": "from-env-123"})
    assert done.returncode == 0, done.stderr
    assert stage_lines(done.stdout, "s") == ["got ***"]
    assert buildit("run", str(f), "--secret", "NOPE_NOT_SET").returncode == 2


def test_a_secret_inside_a_longer_env_value_is_masked_on_its_own_too(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text(
        'pipeline "p"\nenv "AUTH" "Bearer ${secrets.TOKEN}"\n'
        'stage "s" { run "echo whole=$AUTH"; run "echo bare=${AUTH#Bearer }"; }\n'
    )
    done = buildit("run", str(f), "--secret", "TOKEN=tok-7c1d")
    assert done.returncode == 0, done.stderr
    assert stage_lines(done.stdout, "s") == ["whole=***", "bare=***"]


@pytest.mark.parametrize(
    "message", ['"; touch PWNED #', "$(touch PWNED)", "`touch PWNED`", "a' ; touch PWNED ; '"]
)
def test_commit_message_can_never_inject_a_command(make_repo, tmp_path: Path, message: str) -> None:  # type: ignore[no-untyped-def]
    pwned = tmp_path / "PWNED"
    pipeline = (
        'pipeline "inject"\n'
        'stage "show" {\n'
        '    run "echo \\"msg=${git.message}\\""\n'
        '    run "echo msg=${git.message} author=${git.author}"\n'
        "}\n"
    )
    repo = make_repo(pipeline, message=message.replace("PWNED", str(pwned)))
    done = buildit("run", str(repo / ".buildit.kdl"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not pwned.exists(), "the commit message ran as a command"
    lines = stage_lines(done.stdout, "show")
    assert lines[0] == "msg=" + message.replace("PWNED", str(pwned))


def test_git_variables_come_from_the_repository(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline = (
        'pipeline "g"\nstage "s" { run "echo ${git.sha} ${git.short_sha} ${git.branch} ${git.author}"; }\n'
    )
    repo = make_repo(pipeline, message="feat: thing", branch="trunk")
    sha = git(repo, "rev-parse", "HEAD")
    done = buildit("run", str(repo / ".buildit.kdl"))
    assert done.returncode == 0, done.stderr
    assert stage_lines(done.stdout, "s") == [f"{sha} {sha[:8]} trunk Ada Tester <ada@example.test>"]


def test_workspace_holds_tracked_files_only(make_repo) -> None:  # type: ignore[no-untyped-def]
    pipeline = 'pipeline "w"\nstage "s" { run "ls -A | sort"; }\n'
    repo = make_repo(pipeline, files={"src/app.txt": "x"})
    (repo / "untracked.txt").write_text("junk")
    done = buildit("run", str(repo / ".buildit.kdl"))
    assert done.returncode == 0, done.stderr
    assert stage_lines(done.stdout, "s") == [".buildit.kdl", "src"]


def test_failure_skips_dependents_and_exits_1(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text(
        'pipeline "p"\n'
        'stage "a" { run "echo before"; run "exit 7"; run "echo never"; }\n'
        'stage "b" needs="a" { run "echo b"; }\n'
        'stage "c" needs="b" { run "echo c"; }\n'
        'stage "d" { run "echo independent"; }\n'
    )
    done = buildit("run", str(f))
    assert done.returncode == 1
    assert stage_lines(done.stdout, "a") == ["before"]
    assert summary_row(done.stdout, "a")[1:3] == ["✘", "failed"]
    assert summary_row(done.stdout, "a")[-1] == "7"
    assert summary_row(done.stdout, "b")[1:3] == ["–", "skipped"]
    assert summary_row(done.stdout, "c")[1:3] == ["–", "skipped"]
    assert summary_row(done.stdout, "d")[1:3] == ["✔", "succeeded"]


def test_retries_rerun_a_failing_stage(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    f = tmp_path / "p.kdl"
    # Fails on the first two attempts, succeeds on the third.
    f.write_text(
        'pipeline "p"\n'
        'stage "flaky" {\n'
        "    retries 2\n"
        f'    run "echo x >> {counter}; test $(wc -l < {counter}) -ge 3"\n'
        "}\n"
    )
    done = buildit("run", str(f))
    assert done.returncode == 0, done.stdout
    assert counter.read_text().count("x") == 3
    assert "retrying (attempt 2 of 3)" in done.stdout
    assert summary_row(done.stdout, "flaky")[4] == "3"


def test_independent_stages_run_in_parallel(tmp_path: Path) -> None:
    # Each stage waits for the other's marker: only parallel execution can finish both.
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    f = tmp_path / "p.kdl"
    f.write_text(
        'pipeline "p"\n'
        f'stage "a" {{ timeout "20s"; run "touch {a}; while [ ! -e {b} ]; do sleep 0.05; done"; }}\n'
        f'stage "b" {{ timeout "20s"; run "touch {b}; while [ ! -e {a} ]; do sleep 0.05; done"; }}\n'
    )
    done = buildit("run", str(f), "--jobs", "2")
    assert done.returncode == 0, done.stdout
    # With one job the first stage waits forever for the second: it times out.
    f.write_text(f.read_text().replace('"20s"', '"1s"'))
    a.unlink()
    b.unlink()
    done = buildit("run", str(f), "--jobs", "1")
    assert done.returncode == 1
    assert "timed_out" in done.stdout


def test_timeout_marks_stage_timed_out(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text('pipeline "p"\nstage "slow" { timeout "500ms"; run "sleep 30"; }\n')
    done = buildit("run", str(f))
    assert done.returncode == 1
    assert summary_row(done.stdout, "slow")[1:3] == ["⏱", "timed_out"]
    assert "timed out after 0.5s" in done.stdout


def test_artifact_escaping_the_workspace_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text(
        'pipeline "p"\n'
        'stage "a" { run "ln -s /etc/hostname leak"; artifacts "leak"; }\n'
        'stage "b" needs="a" { run "cat leak"; }\n'
    )
    done = buildit("run", str(f))
    assert done.returncode == 1
    assert "symlink pointing outside the workspace" in done.stdout
    assert summary_row(done.stdout, "a")[1:3] == ["!", "error"]
    assert summary_row(done.stdout, "b")[1:3] == ["–", "skipped"]


def test_invalid_pipeline_is_reported_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    f = tmp_path / "p.kdl"
    f.write_text(
        f'pipeline "p"\nstage "a" {{ run "touch {marker}"; }}\nstage "b" needs="nope" {{ run "x"; }}\n'
    )
    done = buildit("run", str(f))
    assert done.returncode == 1
    assert f"{f}:3:11: error: stage 'b' needs unknown stage 'nope'" in done.stderr
    assert not marker.exists()


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BUILDIT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def _wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_ctrl_c_cancels_cleanly_leaving_no_process(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 100000 + 2000}.25"
    f = tmp_path / "p.kdl"
    f.write_text(
        'pipeline "p"\n'
        f'stage "long" {{ run "sleep {marker}"; }}\n'
        f'stage "bg" {{ run "sleep {marker} & sleep {marker}"; }}\n'
        'stage "after" needs="long" { run "echo never"; }\n'
    )
    proc = _start(["run", str(f)])
    _wait_for(lambda: len(pids_with_marker(f"sleep {marker}")) >= 3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 130, out
    assert "interrupted, cancelling running stages" in out
    assert summary_row(out, "long")[1:3] == ["⊘", "cancelled"]
    assert summary_row(out, "after")[1:3] == ["⊘", "cancelled"]
    assert pids_with_marker(f"sleep {marker}") == []


def _buildit_containers() -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=buildit.managed=true"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.docker
def test_docker_example_runs_in_containers(docker_image: str) -> None:
    before = set(_buildit_containers())
    done = buildit("run", str(ROOT / "examples" / "docker.kdl"), "--network", "none", "--pull", "never")
    assert done.returncode == 0, done.stdout + done.stderr
    assert stage_lines(done.stdout, "in-container")[0] == "running in Linux as uid 0 in /workspace"
    assert stage_lines(done.stdout, "on-host") == ["built-in-container"]
    assert stage_lines(done.stdout, "back-in-container") == ["workdir is /workspace/sub"]
    assert set(_buildit_containers()) <= before


def test_the_local_executor_says_it_cannot_apply_a_stages_resources(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text('pipeline "p"\nstage "s" { run "echo ran"; resources cpu="2" memory="4Gi"; }\n')
    done = buildit("run", str(f), "--executor", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "warning: the local executor cannot apply this stage's resources (cpu=2, memory=4Gi): it runs "
        "without these limits" in done.stdout
    ), done.stdout
    assert stage_lines(done.stdout, "s") == ["ran"]


@pytest.mark.docker
def test_docker_ctrl_c_removes_the_container(docker_image: str, tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text(f'pipeline "p"\nstage "c" {{ image "{docker_image}"; run "echo up; sleep 300"; }}\n')
    before = set(_buildit_containers())
    proc = _start(["run", str(f), "--network", "none", "--pull", "never"])
    _wait_for(lambda: len(set(_buildit_containers()) - before) == 1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130, out
    assert summary_row(out, "c")[1:3] == ["⊘", "cancelled"]
    assert set(_buildit_containers()) - before == set()


@pytest.mark.docker
def test_missing_image_is_one_line(docker_image: str, tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text('pipeline "p"\nstage "c" { image "buildit-test/does-not-exist:9"; run "true"; }\n')
    done = buildit("run", str(f), "--network", "none", "--pull", "never")
    assert done.returncode == 1
    assert "image 'buildit-test/does-not-exist:9' is not present" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_auto_without_docker_tells_to_use_local(tmp_path: Path) -> None:
    f = tmp_path / "p.kdl"
    f.write_text('pipeline "p"\nstage "c" { image "alpine:3"; run "echo hi"; }\n')
    done = buildit("run", str(f), env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 1
    assert "no Docker engine reachable" in done.stderr
    assert "pass --executor local" in done.stderr
    assert "Traceback" not in done.stderr
    local = buildit(
        "run", str(f), "--executor", "local", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    )
    assert local.returncode == 0
    assert stage_lines(local.stdout, "c") == ["hi"]


def test_python_module_entry_point_matches_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("buildit ")
    assert os.path.exists(BUILDIT)
