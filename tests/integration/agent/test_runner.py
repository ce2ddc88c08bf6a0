"""The agent runtime (agent.runner) against the fake controller over real gRPC on 127.0.0.1.

Most tests run `Agent` in the test's event loop (see `harness`); the process tests run
`python -m agent.cli` as a child process to check what only a process shows: signals, exit
statuses, the one-line errors, and which modules an idle agent loads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from agent.contract.types import StageStatus
from agent.errors import AgentExit
from agent.settings import default_work_dir
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.harness import running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)


# --- the state dir -------------------------------------------------------------------------------


async def test_one_agent_per_state_dir_and_stale_workspaces_are_removed(
    fake: FakeController, tmp_path: Path
) -> None:
    stale = default_work_dir(tmp_path) / "workspaces" / "lease-from-a-crashed-agent"
    stale.mkdir(parents=True)
    (stale / "file").write_text("left behind")
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        assert not stale.exists()
        async with running_agent(fake, tmp_path) as (_second, second_task):
            with pytest.raises(AgentExit) as refused:
                await asyncio.wait_for(second_task, 5)
    assert refused.value.code == 2
    assert "in use by another agent" in refused.value.message
    assert len(fake.registrations) == 1


# --- drain and processes ---------------------------------------------------------------------------


async def test_controller_drain_finishes_running_stage_then_returns_0(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (agent, task):
        await serving(fake)
        lease = fake.push_lease(spec("sleep 0.3", "echo finished"))
        await fake.wait_for(lambda: fake.updates_for(lease))
        fake.push_drain()
        assert await asyncio.wait_for(task, 10) == 0
        assert agent.draining
    assert fake.updates_for(lease) == [StageStatus.RUNNING, StageStatus.SUCCEEDED]
    assert fake.lines(lease)[-1] == "finished"
    assert fake.lease_streams_opened == 1


def agent_command(fake: FakeController, state_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "--controller",
        fake.address,
        "--state-dir",
        str(state_dir),
        "--executor",
        "local",
        "--name",
        "proc-agent",
        *extra,
    ]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )


async def test_process_sigterm_drains_running_stage_and_exits_0(fake: FakeController, tmp_path: Path) -> None:
    proc = await spawn(*agent_command(fake, tmp_path, "--registration-token", "enrol"))
    try:
        await serving(fake)
        lease = fake.push_lease(spec("sleep 0.6", "echo done"))
        await fake.wait_for(lambda: "$ sleep 0.6" in fake.lines(lease))
        proc.send_signal(signal.SIGTERM)
        await fake.wait_for(lambda: any(h.draining for h in fake.heartbeats), what="a draining heartbeat")
        await fake.wait_for(lambda: not fake.lease_stream_open, what="the lease stream to close")
        assert fake.final_update(lease) is None  # still running
        extra = fake.push_lease(spec("echo should-not-run"))
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert fake.updates_for(lease) == [StageStatus.RUNNING, StageStatus.SUCCEEDED]
    assert fake.lines(lease)[-1] == "done"
    assert fake.updates_for(extra) == []
    assert fake.lease_streams_opened == 1


async def test_process_second_signal_kills_running_stage(fake: FakeController, tmp_path: Path) -> None:
    proc = await spawn(*agent_command(fake, tmp_path, "--registration-token", "enrol"))
    try:
        await serving(fake)
        lease = fake.push_lease(spec("sleep 30"))
        await fake.wait_for(lambda: fake.lines(lease))
        proc.send_signal(signal.SIGINT)
        await fake.wait_for(lambda: not fake.lease_stream_open)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
        took = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert took < 3
    assert stderr.decode().strip().splitlines()[-1].startswith("buildit agent: stopped before")
    assert fake.updates_for(lease) == [StageStatus.RUNNING]


async def test_process_wrong_registration_token_exits_1_with_one_line(
    fake: FakeController, tmp_path: Path
) -> None:
    proc = await spawn(*agent_command(fake, tmp_path, "--registration-token", "wrong"))
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("buildit agent: registration refused by 127.0.0.1:")
    assert "invalid registration token" in last
    assert not (tmp_path / "agent.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--labels", "arch"], "must be KEY=VALUE"),
        (["--capacity", "zero"], "whole number"),
        (["--controller", "nohost"], "HOST:PORT"),
    ],
)
async def test_process_bad_input_exits_2(
    fake: FakeController, tmp_path: Path, flags: list[str], message: str
) -> None:
    proc = await spawn(*agent_command(fake, tmp_path), *flags)
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("buildit agent: error: ") and message in lines[0]


# An idle agent in a real process: registered, lease stream open, nothing running. On SIGUSR1 it
# prints the loaded top-level packages and its RSS, then the test drains it.
_IDLE_PROBE = """
import json, signal, sys
from agent.cli import main

def report(*_):
    rss = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    modules = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps({"modules": modules, "rss_kib": int(rss)}), flush=True)

signal.signal(signal.SIGUSR1, report)
sys.exit(main(sys.argv[1:]))
"""


async def test_idle_agent_process_loads_neither_litestar_nor_piccolo(
    fake: FakeController, tmp_path: Path
) -> None:
    args = agent_command(fake, tmp_path, "--registration-token", "enrol")[3:]
    proc = await spawn(sys.executable, "-c", _IDLE_PROBE, *args)
    try:
        await serving(fake)
        await fake.wait_for(lambda: fake.heartbeats, what="a heartbeat")
        proc.send_signal(signal.SIGUSR1)
        assert proc.stdout is not None
        report = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    modules = set(report["modules"])
    assert {"agent", "grpc"} <= modules
    assert not modules & {"litestar", "piccolo", "controller", "docker", "dulwich", "kdl", "rich"}
    print(f"idle agent RSS: {report['rss_kib'] / 1024:.1f} MiB")
