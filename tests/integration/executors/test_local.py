"""The local executor against real processes and real signals."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from agent.contract.types import StageSpec, StageStatus
from agent.executors.local import LocalExecutor


def spec(*commands: str, **kw: object) -> StageSpec:
    return StageSpec(name="s", index=0, commands=commands, **kw)  # type: ignore[arg-type]


async def run(s: StageSpec, ws: Path, cancel: asyncio.Event | None = None) -> tuple[object, list[str]]:
    lines: list[str] = []
    result = await LocalExecutor().run(s, ws, lines.append, cancel or asyncio.Event())
    return result, lines


def pids_with_marker(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


async def test_commands_run_in_order_and_output_streams_line_by_line(tmp_path: Path) -> None:
    result, lines = await run(spec("echo one; echo two >&2", "printf 'no newline'"), tmp_path)
    assert result.status is StageStatus.SUCCEEDED and result.exit_code == 0
    assert lines == ["$ echo one; echo two >&2", "one", "two", "$ printf 'no newline'", "no newline"]


async def test_stops_at_first_failure_with_its_exit_code(tmp_path: Path) -> None:
    result, lines = await run(spec("echo a", "exit 3", "touch ran-after"), tmp_path)
    assert result.status is StageStatus.FAILED and result.exit_code == 3
    assert result.command == 2  # the command it failed in, which the stage's message names
    assert not (tmp_path / "ran-after").exists()
    assert "$ touch ran-after" not in lines


async def test_env_secrets_workdir(tmp_path: Path) -> None:
    s = spec(
        'echo "$FOO $BUILDIT_SECRET_T"; pwd',
        env={"FOO": "bar"},
        secrets={"BUILDIT_SECRET_T": "tok"},
        workdir="sub/dir",
    )
    result, lines = await run(s, tmp_path)
    assert result.status is StageStatus.SUCCEEDED
    assert lines[1] == "bar tok"
    assert lines[2] == str(tmp_path / "sub" / "dir")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 100000 + 1000}.123"
    # A background grandchild and a foreground sleep: both must die.
    s = spec(f"sleep {marker} & sleep {marker}; echo never", timeout_s=0.5)
    started = time.monotonic()
    result, lines = await run(s, tmp_path)
    assert result.status is StageStatus.TIMED_OUT and result.command == 1
    assert "timed out after 0.5s" in result.message
    assert time.monotonic() - started < 5
    assert "never" not in lines
    await asyncio.sleep(0.1)
    assert pids_with_marker(f"sleep {marker}") == []


async def test_cancel_kills_within_a_second(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 100000 + 1000}.456"
    cancel = asyncio.Event()
    task = asyncio.create_task(run(spec(f"echo started; sleep {marker}"), tmp_path, cancel))
    for _ in range(100):
        if pids_with_marker(f"sleep {marker}"):
            break
        await asyncio.sleep(0.02)
    assert pids_with_marker(f"sleep {marker}"), "the stage never started"
    t0 = time.monotonic()
    cancel.set()
    result, lines = await task
    assert time.monotonic() - t0 < 1.0
    assert result.status is StageStatus.CANCELLED
    assert lines[:2] == [f"$ echo started; sleep {marker}", "started"]
    assert pids_with_marker(f"sleep {marker}") == []


async def test_leftover_background_jobs_do_not_hang_the_stage(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 100000 + 1000}.789"
    started = time.monotonic()
    result, _ = await run(spec(f"sleep {marker} & echo done"), tmp_path)
    assert result.status is StageStatus.SUCCEEDED
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.1)
    assert pids_with_marker(f"sleep {marker}") == []


async def test_long_lines_and_binary_output_are_delivered_safely(tmp_path: Path) -> None:
    result, lines = await run(
        spec("head -c 200000 /dev/zero | tr '\\0' x; echo; printf '\\377\\n'"), tmp_path
    )
    assert result.status is StageStatus.SUCCEEDED
    body = lines[1:]
    assert "".join(body[:-1]) == "x" * 200000
    assert all(len(line) <= 64 * 1024 for line in body)
    assert body[-1] == "\ufffd"
