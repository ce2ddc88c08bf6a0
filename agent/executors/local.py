"""The local executor: each command as `sh -c` in its own process group, in the workspace.

A stage's processes share one process group (a new session), so timeout and cancellation kill
the whole tree, including background jobs a command left behind. Output is read by a
subprocess protocol rather than stream readers: the shell's exit is seen at once even while a
stray background job still holds the output pipe open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from agent.contract.types import ExecutionResult, StageSpec, StageStatus
from agent.executors.base import NO_CONTEXT, OutputCallback, StageContext, piece_callback
from agent.executors.environment import inherited_environment
from agent.executors.lines import LineSplitter

KILL_GRACE_S = 0.5
DRAIN_TIMEOUT_S = 2.0


class _CommandProtocol(asyncio.SubprocessProtocol):
    def __init__(self, splitter: LineSplitter) -> None:
        loop = asyncio.get_running_loop()
        self.splitter = splitter
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.splitter.feed(data if isinstance(data, bytes) else data.encode())

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class LocalExecutor:
    """Runs stages as host processes (images are ignored: this is `--executor local`)."""

    name = "local"

    def __init__(self, inherit_env: bool = True, shell: str = "/bin/sh") -> None:
        self.inherit_env = inherit_env
        self.shell = shell
        self._hidden: set[str] = set()

    def hide(self, *values: str) -> None:
        """Credentials of the agent: a variable whose value holds one is not inherited by stages."""
        self._hidden.update(value for value in values if value)

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
        context: StageContext = NO_CONTEXT,
    ) -> ExecutionResult:
        """Run the commands in order in `workspace/workdir`; see `Executor.run`."""
        cwd = (workspace / spec.workdir) if spec.workdir else workspace
        try:
            cwd.mkdir(parents=True, exist_ok=True)  # like a container's working_dir
            cwd.resolve().relative_to(workspace.resolve())
        except ValueError:
            return ExecutionResult(
                StageStatus.ERROR, message=f"workdir '{spec.workdir}' leaves the workspace"
            )
        except OSError as exc:
            return ExecutionResult(StageStatus.ERROR, message=f"workdir '{spec.workdir}': {exc.strerror}")
        env = inherited_environment(os.environ, self._hidden) if self.inherit_env else {"PATH": os.defpath}
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
        loop = asyncio.get_running_loop()
        splitter = LineSplitter(on_output, piece_callback(on_output))
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _CommandProtocol(splitter),
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
        pgid = transport.get_pid()
        cancelled = asyncio.ensure_future(cancel.wait())
        outcome: ExecutionResult | None = None
        try:
            remaining = max(deadline - time.monotonic(), 0.0)
            waiters: set[asyncio.Future[Any]] = {proto.exited, cancelled}
            done, _ = await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if proto.exited not in done:
                await _kill_group(pgid, proto)
                if cancelled in done:
                    outcome = ExecutionResult(StageStatus.CANCELLED, message="cancelled")
                else:
                    outcome = ExecutionResult(
                        StageStatus.TIMED_OUT, message=f"timed out after {timeout_s:g}s"
                    )
            # Leftover background jobs of this command die with it; then the pipe drains and closes.
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await asyncio.shield(proto.closed)
            splitter.flush()
        finally:
            cancelled.cancel()
            if not proto.exited.done():
                await _kill_group(pgid, proto)
            transport.close()
        if outcome is not None:
            return outcome
        code = transport.get_returncode()
        if code == 0:
            return None
        return ExecutionResult(StageStatus.FAILED, exit_code=code, message=f"exit code {code}")


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _kill_group(pgid: int, proto: Any) -> None:
    """SIGTERM the group, SIGKILL it after a short grace; returns once the shell has exited."""
    _signal_group(pgid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await asyncio.shield(proto.exited)
    _signal_group(pgid, signal.SIGKILL)
    await proto.exited
