"""The local executor: each command as `sh -c` in its own process group, in the workspace.

A stage's processes share one process group (a new session), so timeout and cancellation kill
the whole tree, including background jobs a command left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from agent.contract.types import ExecutionResult, StageSpec, StageStatus
from agent.executors.base import OutputCallback

READ_CHUNK = 64 * 1024
MAX_LINE = 64 * 1024
KILL_GRACE_S = 0.5


class LocalExecutor:
    """Runs stages as host processes (images are ignored: this is `--executor local`)."""

    name = "local"

    def __init__(self, inherit_env: bool = True, shell: str = "/bin/sh") -> None:
        self.inherit_env = inherit_env
        self.shell = shell

    def can_run(self, spec: StageSpec) -> bool:
        """Any stage: an image, if given, is ignored."""
        return True

    async def close(self) -> None:
        """Nothing to release."""

    async def run(
        self,
        spec: StageSpec,
        workspace: Path,
        on_output: OutputCallback,
        cancel: asyncio.Event,
    ) -> ExecutionResult:
        """Run the commands in order in `workspace/workdir`; see `Executor.run`."""
        cwd = workspace / spec.workdir if spec.workdir else workspace
        if not cwd.is_dir():
            return ExecutionResult(StageStatus.ERROR, message=f"workdir '{spec.workdir}' does not exist")
        env = dict(os.environ) if self.inherit_env else {"PATH": os.defpath}
        env.update(spec.env)
        env.update(spec.secrets)
        deadline = time.monotonic() + spec.timeout_s
        for command in spec.commands:
            on_output(f"$ {command}")
            result = await self._run_one(command, cwd, env, on_output, cancel, deadline, spec.timeout_s)
            if result is not None:
                return result
        return ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)

    async def _run_one(
        self,
        command: str,
        cwd: Path,
        env: dict[str, str],
        on_output: OutputCallback,
        cancel: asyncio.Event,
        deadline: float,
        timeout_s: float,
    ) -> ExecutionResult | None:
        """None when the command succeeded, else how the stage ended."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.shell,
                "-c",
                command,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return ExecutionResult(StageStatus.ERROR, message=f"could not start {self.shell}: {exc}")
        assert proc.stdout is not None
        reader = asyncio.ensure_future(_pump(proc.stdout, on_output))
        waiter = asyncio.ensure_future(proc.wait())
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            remaining = max(deadline - time.monotonic(), 0.0)
            done, _ = await asyncio.wait({waiter, cancelled}, timeout=remaining, return_when="FIRST_COMPLETED")
            if waiter not in done:
                await _kill_group(proc)
                await _finish_reader(reader)
                if cancelled in done:
                    return ExecutionResult(StageStatus.CANCELLED, message="cancelled")
                return ExecutionResult(
                    StageStatus.TIMED_OUT, message=f"timed out after {_fmt_seconds(timeout_s)}"
                )
            # The shell is done; leftover background jobs of this command are killed too.
            _signal_group(proc.pid, signal.SIGKILL)
            await _finish_reader(reader)
        finally:
            cancelled.cancel()
            if proc.returncode is None:
                await _kill_group(proc)
            reader.cancel()
        code = proc.returncode
        if code == 0:
            return None
        return ExecutionResult(StageStatus.FAILED, exit_code=code, message=f"exit code {code}")


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the group, SIGKILL it after a short grace; always reaps the shell."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    except TimeoutError:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


async def _finish_reader(reader: asyncio.Future[None]) -> None:
    """Let the reader drain what is left in the pipe, but never hang on a stray writer."""
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(reader), 2.0)


async def _pump(stream: asyncio.StreamReader, on_output: OutputCallback) -> None:
    """Split the byte stream into lines for `on_output`; over-long lines are split too."""
    pending = b""
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_output(line.rstrip(b"\r").decode("utf-8", "replace"))
        while len(pending) > MAX_LINE:
            on_output(pending[:MAX_LINE].decode("utf-8", "replace"))
            pending = pending[MAX_LINE:]
    if pending:
        on_output(pending.rstrip(b"\r").decode("utf-8", "replace"))
