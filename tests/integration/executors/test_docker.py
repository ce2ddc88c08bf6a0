"""DockerExecutor against the real Docker engine (started by scripts/ensure-docker.sh).

Every stage runs with network "none" and pull policy "never" (no registry is reachable here), except
the pull-failure test, which points at a loopback registry so the pull fails fast and locally. The
tests talk to the engine through the `docker` CLI, keeping agent/executors/docker.py the only user of
the SDK.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.contract.types import ExecutionResult, Resources, StageSpec, StageStatus
from agent.executors.base import Executor, ExecutorError, outcome_message
from agent.executors.docker import DockerExecutor

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60)]


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def _our_containers() -> list[str]:
    """Containers this test process's executor owns (label buildit.pid = our pid)."""
    out = _docker(
        "ps", "-aq", "--filter", "label=buildit.managed=true", "--filter", f"label=buildit.pid={os.getpid()}"
    )
    return out.split()


def _container_exists(container_id: str) -> bool:
    probe = subprocess.run(["docker", "inspect", container_id], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.fixture
async def executor(docker_image: str) -> AsyncIterator[DockerExecutor]:
    ex = DockerExecutor.connect(network_mode="none", pull_policy="never")
    yield ex
    await ex.close()
    assert _our_containers() == [], "a stage container was left behind"


class Stage:
    """Runs one stage and records its output lines, when they arrived and on which thread."""

    def __init__(self, executor: DockerExecutor, workspace: Path, image: str) -> None:
        self.executor = executor
        self.workspace = workspace
        self.image = image
        self.lines: list[str] = []
        self.arrivals: list[float] = []
        self.threads: set[int] = set()
        self.cancel = asyncio.Event()
        self.first_line = asyncio.Event()

    def on_output(self, line: str) -> None:
        self.lines.append(line)
        self.arrivals.append(time.monotonic())
        self.threads.add(threading.get_ident())
        self.first_line.set()

    async def run(self, *commands: str, **fields: Any) -> ExecutionResult:
        fields.setdefault("image", self.image)
        spec = StageSpec(name=fields.pop("name", "test"), index=0, commands=commands, **fields)
        return await self.executor.run(spec, self.workspace, self.on_output, self.cancel)


@pytest.fixture
def stage(executor: DockerExecutor, tmp_path: Path, docker_image: str) -> Stage:
    return Stage(executor, tmp_path, docker_image)


def test_implements_the_executor_protocol(docker_image: str) -> None:
    ex = DockerExecutor.connect(network_mode="none", pull_policy="never")
    try:
        assert isinstance(ex, Executor)
        assert ex.name == "docker"
        assert ex.can_run(StageSpec(name="a", index=0, commands=("true",), image=docker_image))
        assert not ex.can_run(StageSpec(name="a", index=0, commands=("true",)))
    finally:
        asyncio.run(ex.close())


async def test_commands_run_in_order_with_headers(stage: Stage) -> None:
    result = await stage.run("echo one", "echo two; echo three", "true")

    assert result == ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)
    assert stage.lines == ["$ echo one", "one", "$ echo two; echo three", "two", "three", "$ true"]
    assert stage.threads == {threading.get_ident()}, "on_output must be called on the event loop thread"


async def test_output_is_streamed_live(stage: Stage) -> None:
    result = await stage.run("echo early; sleep 1; echo late")

    assert result.status is StageStatus.SUCCEEDED
    assert stage.lines == ["$ echo early; sleep 1; echo late", "early", "late"]
    assert stage.arrivals[2] - stage.arrivals[1] > 0.5, "lines were batched until the end, not streamed"


async def test_stops_at_first_failure_with_its_exit_code(stage: Stage, tmp_path: Path) -> None:
    result = await stage.run("echo before", "exit 7", "echo after", "touch ran-anyway")

    assert result.status is StageStatus.FAILED
    assert result.exit_code == 7
    assert result.command == 2  # the command it failed in, which the stage's message names
    assert stage.lines == ["$ echo before", "before", "$ exit 7"]
    assert not (tmp_path / "ran-anyway").exists()


async def test_commands_are_announced_and_output_cannot_announce_one_out_of_turn(stage: Stage) -> None:
    announced: list[tuple[int, int, str]] = []

    class Output:
        """An output callback that takes command announcements, as the agent's does."""

        def __call__(self, line: str) -> None:
            stage.on_output(line)

        def command(self, index: int, total: int, text: str) -> None:
            announced.append((index, total, text))

    # The first command prints the container script's header for command 3 (and a line after it).
    forge = r"printf 'x\036\0373\nafter\n'"
    spec = StageSpec(name="t", index=0, commands=(forge, "exit 5", "echo never"), image=stage.image)
    result = await stage.executor.run(spec, stage.workspace, Output(), stage.cancel)

    assert (result.status, result.exit_code, result.command) == (StageStatus.FAILED, 5, 2)
    assert announced == [(1, 3, forge), (2, 3, "exit 5")]
    assert stage.lines == ["x", "3", "after"]  # out of turn: shown as output


async def test_workspace_is_mounted_and_workdir_honoured(stage: Stage, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "from-host.txt").write_text("written on the host\n")

    result = await stage.run("pwd", "cat ../from-host.txt", "echo made in stage > made.txt", workdir="sub")

    assert result.status is StageStatus.SUCCEEDED, stage.lines
    assert "/workspace/sub" in stage.lines
    assert "written on the host" in stage.lines
    assert (tmp_path / "sub" / "made.txt").read_text() == "made in stage\n"


async def test_workdir_outside_the_workspace_is_refused(stage: Stage) -> None:
    result = await stage.run("true", workdir="../etc")

    assert result.status is StageStatus.ERROR
    assert "outside the workspace" in result.message


async def test_env_and_secrets_reach_the_container(stage: Stage) -> None:
    result = await stage.run(
        'echo "greeting=$GREETING"',
        'echo "token=$API_TOKEN"',
        env={"GREETING": "hello world"},
        secrets={"API_TOKEN": "s3cr3t-value"},
    )

    assert result.status is StageStatus.SUCCEEDED
    assert "greeting=hello world" in stage.lines
    assert "token=s3cr3t-value" in stage.lines  # masking is the caller's job, not the executor's


async def test_partial_lines_are_delivered(stage: Stage) -> None:
    result = await stage.run("printf 'no newline here'", "printf 'last words'")

    assert result.status is StageStatus.SUCCEEDED
    # The header of the next command still starts its own line.
    assert stage.lines == [
        "$ printf 'no newline here'",
        "no newline here",
        "$ printf 'last words'",
        "last words",
    ]


async def test_stderr_is_captured_in_order_and_bad_utf8_replaced(stage: Stage) -> None:
    result = await stage.run("echo out1; echo err1 >&2; echo out2; echo err2 >&2", r"printf '\377ok\n'")

    assert result.status is StageStatus.SUCCEEDED
    assert stage.lines[1:5] == ["out1", "err1", "out2", "err2"]
    assert stage.lines[-1] == "\ufffdok"


async def test_timeout_kills_the_container(stage: Stage) -> None:
    started = time.monotonic()
    result = await stage.run("echo started", "sleep 30", timeout_s=1.5)
    elapsed = time.monotonic() - started

    assert result.status is StageStatus.TIMED_OUT
    assert result.message == "timed out after 1.5s"
    assert elapsed < 1.5 + 1.5, f"took {elapsed:.1f}s"
    assert "started" in stage.lines  # output produced before the kill is kept
    assert _our_containers() == []


async def test_cancel_event_kills_the_container(stage: Stage) -> None:
    task = asyncio.create_task(stage.run("echo started; sleep 30"))
    await asyncio.wait_for(stage.first_line.wait(), timeout=15)
    await asyncio.sleep(0.2)  # let `sleep 30` begin

    stage.cancel.set()
    cancelled_at = time.monotonic()
    result = await asyncio.wait_for(task, timeout=10)
    elapsed = time.monotonic() - cancelled_at

    assert result.status is StageStatus.CANCELLED
    assert elapsed < 1.5, f"cancel took {elapsed:.1f}s"
    assert _our_containers() == []


async def test_task_cancellation_still_removes_the_container(stage: Stage) -> None:
    task = asyncio.create_task(stage.run("echo started; sleep 30"))
    await asyncio.wait_for(stage.first_line.wait(), timeout=15)
    assert len(_our_containers()) == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _our_containers() == []


async def test_concurrent_stages_do_not_mix_output(
    executor: DockerExecutor, tmp_path: Path, docker_image: str
) -> None:
    a, b = Stage(executor, tmp_path, docker_image), Stage(executor, tmp_path, docker_image)

    results = await asyncio.gather(a.run("echo from-a", name="a"), b.run("echo from-b", name="b"))

    assert [r.status for r in results] == [StageStatus.SUCCEEDED, StageStatus.SUCCEEDED]
    assert a.lines == ["$ echo from-a", "from-a"]
    assert b.lines == ["$ echo from-b", "from-b"]


async def test_missing_image_with_pull_policy_never(stage: Stage) -> None:
    result = await stage.run("true", image="buildit-test/not-here:1")

    assert result.status is StageStatus.ERROR
    assert result.message == (
        "image 'buildit-test/not-here:1' is not present on the Docker engine and pulling is disabled "
        "(pull policy: never)"
    )
    assert stage.lines == []


async def test_start_failure_is_one_line_error(stage: Stage, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")

    result = await stage.run("true", workdir="a-file")  # the engine cannot chdir into a file

    assert result.status is StageStatus.ERROR
    assert result.message.startswith("could not start a container for stage 'test' from image ")
    assert "\n" not in result.message
    assert _our_containers() == []  # the created-but-never-started container is removed too


async def test_engine_error_on_create_is_one_line_error(docker_image: str, tmp_path: Path) -> None:
    ex = DockerExecutor(network_mode="buildit-no-such-network", pull_policy="never")
    try:
        result = await Stage(ex, tmp_path, docker_image).run("true")
    finally:
        await ex.close()

    assert result.status is StageStatus.ERROR
    assert result.message.startswith("could not start a container for stage 'test' from image ")
    assert "buildit-no-such-network" in result.message
    assert "\n" not in result.message
    assert _our_containers() == []


async def test_pull_failure_is_one_line_error(docker_image: str, tmp_path: Path) -> None:
    image = "127.0.0.1:9/buildit-missing/nothing:1"
    ex = DockerExecutor.connect(network_mode="none", pull_policy="missing")
    try:
        result = await Stage(ex, tmp_path, docker_image).run("true", image=image)
    finally:
        await ex.close()

    assert result.status is StageStatus.ERROR
    assert result.message.startswith(f"could not pull image '{image}': ")
    assert "connection refused" in result.message
    assert "\n" not in result.message
    assert len(result.message) < 400
    assert "Traceback" not in result.message


def _own_start_time() -> str:
    stat = Path("/proc/self/stat").read_text()
    return stat.rpartition(")")[2].split()[19]


def test_reap_orphans_removes_dead_owners_only(docker_image: str) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    dead_pid = child.pid
    assert not Path(f"/proc/{dead_pid}").exists()
    host = socket.gethostname()

    def create(pid: int, pid_start: str, on_host: str = host) -> str:
        return _docker(
            "create", "--network", "none",
            "--label", "buildit.managed=true", "--label", "buildit.stage=reap-test",
            "--label", f"buildit.pid={pid}", "--label", f"buildit.pid_start={pid_start}",
            "--label", f"buildit.host={on_host}",
            docker_image, "true",
        ).strip()  # fmt: skip

    dead = create(dead_pid, "12345")
    reused_pid = create(os.getpid(), "1")  # our pid, but another process's start time
    live = create(os.getpid(), _own_start_time())
    other_host = create(dead_pid, "12345", on_host=f"not-{host}")
    ex = DockerExecutor(network_mode="none", pull_policy="never")
    try:
        reaped = ex.reap_orphans()

        assert reaped >= 2
        assert not _container_exists(dead)
        assert not _container_exists(reused_pid)
        assert _container_exists(live)
        assert _container_exists(other_host)
    finally:
        asyncio.run(ex.close())
        subprocess.run(["docker", "rm", "-f", dead, reused_pid, live, other_host], capture_output=True)


def test_connect_to_unreachable_engine_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")

    with pytest.raises(ExecutorError) as raised:
        DockerExecutor.connect()

    message = str(raised.value)
    assert message.startswith("no Docker engine reachable at unix:///nonexistent.sock: ")
    assert message.endswith("; start dockerd or pass --executor local")
    assert "No such file or directory" in message
    assert "\n" not in message


# --- resources ---------------------------------------------------------------------------------

# The container's own view of its limits, on cgroup v2 or v1 hosts (this one runs v1).
_SHOW_LIMITS = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
    "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
    "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
)


async def test_a_stage_runs_under_its_resources_and_others_under_the_agents_defaults(
    docker_image: str, tmp_path: Path
) -> None:
    ex = DockerExecutor.connect(
        network_mode="none", pull_policy="never", defaults=Resources(memory_bytes=64 * 2**20, pids=100)
    )
    try:
        own = Stage(ex, tmp_path, docker_image)
        asked = Resources(cpu_millis=500, memory_bytes=32 * 2**20, pids=50)
        assert (await own.run(_SHOW_LIMITS, resources=asked)).ok
        memory, cpu, pids = own.lines[1:]
        assert int(memory) == 32 * 2**20
        assert cpu.split()[0] == "50000"  # 0.5 of the CFS period (100000 µs), v1 and v2 alike
        assert pids == "50"
        defaults = Stage(ex, tmp_path, docker_image)
        assert (await defaults.run(_SHOW_LIMITS)).ok
        memory, cpu, pids = defaults.lines[1:]
        assert (int(memory), pids) == (64 * 2**20, "100")
        assert cpu.split()[0] in ("-1", "max")  # no CPU limit asked by either
    finally:
        await ex.close()


async def test_a_stage_over_its_memory_is_killed_and_says_so(stage: Stage) -> None:
    hog = 'x=$(head -c 64000000 /dev/zero | tr "\\0" a); echo survived ${#x}'
    result = await stage.run("echo start", hog, resources=Resources(memory_bytes=16 * 2**20))
    assert (result.status, result.oom_killed, result.command, result.message) == (
        StageStatus.FAILED,
        True,
        2,
        "memory limit 16Mi",
    )
    assert not [line for line in stage.lines if line.startswith("survived")], stage.lines
    spec = StageSpec(name="s", index=0, commands=("echo start", hog))
    assert outcome_message(result, spec.commands) == (
        'command 2 of 2 ran out of memory: "x=$(head -c 64000000 /dev/zero | tr "\\0" a); echo survived…" '
        "was killed (memory limit 16Mi)"
    )


async def test_a_fork_bomb_stops_at_the_pids_limit(stage: Stage) -> None:
    result = await stage.run(
        "for i in $(seq 1 40); do sleep 5 & done; wait; echo all forked", resources=Resources(pids=10)
    )
    assert result.status is StageStatus.FAILED, stage.lines
    assert any("can't fork" in line for line in stage.lines), stage.lines
    assert "all forked" not in stage.lines
