"""Nothing a local stage starts outlives it: daemons that leave its process group die with it too.

Real processes on this host. `setsid` puts a daemon in a session (and process group) of its own,
which no signal to the stage's group reaches; a double fork reparents it away from the stage's
shell. Where the host allows (root, or unprivileged user namespaces), each command runs in a PID
namespace of its own, and its end ends everything in it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.contract.types import ExecutionResult, StageSpec, StageStatus
from agent.executors.containment import namespace_prefix
from agent.executors.local import LocalExecutor
from tests.integration.processes import gone, marker

pytestmark = pytest.mark.timeout(60)


async def run(executor: LocalExecutor, command: str, ws: Path) -> tuple[ExecutionResult, list[str]]:
    lines: list[str] = []
    spec = StageSpec(name="s", index=0, commands=(command, "echo next command"))
    result = await executor.run(spec, ws, lines.append, asyncio.Event())
    return result, lines


needs_namespaces = pytest.mark.skipif(
    namespace_prefix() is None, reason="no PID namespaces here (needs root or user namespaces)"
)


@needs_namespaces
async def test_a_setsid_daemon_does_not_outlive_its_command(tmp_path: Path) -> None:
    daemon = marker()
    result, lines = await run(LocalExecutor(), f"setsid sleep {daemon} & sleep 0.2; echo started", tmp_path)
    assert result.status is StageStatus.SUCCEEDED, lines
    assert await gone(daemon)


@needs_namespaces
async def test_a_double_forked_daemon_in_its_own_session_does_not_outlive_its_command(tmp_path: Path) -> None:
    daemon = marker()
    command = f"(setsid sh -c 'sleep {daemon} & exit 0' &); sleep 0.2; echo started"
    result, _ = await run(LocalExecutor(), command, tmp_path)
    assert result.status is StageStatus.SUCCEEDED
    assert await gone(daemon)


@needs_namespaces
async def test_a_stage_sees_only_its_own_processes(tmp_path: Path) -> None:
    result, lines = await run(LocalExecutor(), "echo $$; ls /proc | grep -c '^[0-9]'", tmp_path)
    assert result.status is StageStatus.SUCCEEDED
    assert lines[1] == "1"  # the command's shell is the namespace's first process
    assert int(lines[2]) < 10  # not the host's processes, nor the agent's /proc/<pid>/environ


@needs_namespaces
async def test_exit_codes_and_signals_come_through_the_namespace(tmp_path: Path) -> None:
    executor = LocalExecutor()
    result, _ = await run(executor, "exit 7", tmp_path)
    assert (result.status, result.exit_code) == (StageStatus.FAILED, 7)
    # The shell is its namespace's first process, which ignores signals it has no handler for;
    # the handlers it is given make `kill $$` end it as it would anywhere else.
    result, lines = await run(executor, "kill $$; echo survived", tmp_path)
    assert (result.status, result.exit_code) == (StageStatus.FAILED, 143)
    assert "survived" not in lines
    result, lines = await run(executor, "trap 'echo own handler; exit 3' TERM; kill $$", tmp_path)
    assert (result.exit_code, lines[-1]) == (3, "own handler")


@needs_namespaces
async def test_a_timed_out_stage_leaves_nothing_running(tmp_path: Path) -> None:
    daemon, foreground = marker(), marker()
    spec = StageSpec(
        name="s", index=0, commands=(f"setsid sleep {daemon} & sleep {foreground}",), timeout_s=0.5
    )
    lines: list[str] = []
    result = await LocalExecutor().run(spec, tmp_path, lines.append, asyncio.Event())
    assert result.status is StageStatus.TIMED_OUT
    assert await gone(daemon) and await gone(foreground)


async def test_without_namespaces_the_process_group_is_still_killed(tmp_path: Path) -> None:
    background = marker()
    result, _ = await run(
        LocalExecutor(containment="process-group"), f"sleep {background} & echo x", tmp_path
    )
    assert result.status is StageStatus.SUCCEEDED
    assert await gone(background)


async def test_without_namespaces_a_setsid_daemon_is_found_by_its_marker(tmp_path: Path) -> None:
    daemon = marker()
    executor = LocalExecutor(containment="process-group")
    result, _ = await run(executor, f"setsid sleep {daemon} & sleep 0.2", tmp_path)
    assert result.status is StageStatus.SUCCEEDED
    assert await gone(daemon)
