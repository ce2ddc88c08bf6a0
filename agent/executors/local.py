"""The local executor: each command as `sh -c` in the workspace, contained, in its own process group.

Each command runs in a PID namespace of its own where the host allows it, and always in a new
session (its own process group), so timeout and cancellation kill the whole tree; when the
command ends, or the agent dies, everything it started dies, daemons included (see
`agent.executors.containment` for how, and what remains possible without namespaces). Stages
inherit the agent's environment without its credentials (`agent.executors.environment`). Output
is read by a subprocess protocol rather than stream readers: the shell's exit is seen at once even
while a stray background job still holds the output pipe open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from agent.contract.types import ExecutionResult, StageSpec, StageStatus
from agent.executors.base import (
    NO_CONTEXT,
    ExecutorError,
    OutputCallback,
    StageContext,
    announce,
    piece_callback,
)
from agent.executors.containment import (
    COMMAND_PRELUDE,
    STAGE_MARKER,
    Containment,
    Reaper,
    kill_marked,
    namespace_prefix,
)
from agent.executors.environment import inherited_environment
from agent.executors.lines import LineSplitter
from agent.executors.users import RunAs, chown_tree

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
    applies_resources = False

    def __init__(
        self,
        inherit_env: bool = True,
        shell: str = "/bin/sh",
        containment: Containment = "auto",
        run_as: RunAs | None = None,
    ) -> None:
        """`containment`: "namespace" requires PID namespaces (ExecutorError without), "auto" uses
        them when the host allows, "process-group" never does (see `agent.executors.containment`).
        `run_as`: the user commands run as (the agent must be root; see `agent.executors.users`).
        """
        self.inherit_env = inherit_env
        self.shell = shell
        #: The user stages run as (None: the agent's own user).
        self.run_as = run_as
        self._drop: tuple[str, ...] = ()
        if run_as is not None:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise ExecutorError("--run-as needs util-linux's setpriv on this host")
            self._drop = run_as.command(setpriv)
        self._hidden: set[str] = set()
        self._namespace = None if containment == "process-group" else namespace_prefix()
        if containment == "namespace" and self._namespace is None:
            raise ExecutorError(
                "PID namespaces are not available for local stages here (needs root or unprivileged "
                "user namespaces, and util-linux's unshare); pass --containment auto or process-group"
            )
        #: Prefix of every stage's BUILDIT_STAGE marker: the agent's identity once it claimed one.
        self._owner = ""
        #: Every stage marker of this executor starts with this (see `claim`).
        self._instance = uuid.uuid4().hex[:12]
        #: Kills this executor's stage processes if this process dies.
        self._reaper = Reaper()
        self._closer = weakref.finalize(self, self._reaper.close)

    @property
    def contained(self) -> bool:
        """True when commands run in PID namespaces of their own."""
        return self._namespace is not None

    def claim(self, owner: str) -> int:
        """Become agent `owner`: kill what stages of an earlier agent process of `owner` left running.

        Blocking (scans /proc). Returns how many processes were killed.
        """
        self._owner = owner
        return kill_marked(f"{owner}/") if owner else 0

    def hide(self, *values: str) -> None:
        """Credentials of the agent: a variable whose value holds one is not inherited by stages."""
        self._hidden.update(value for value in values if value)

    def can_run(self, spec: StageSpec) -> bool:
        """Any stage: an image, if given, is ignored."""
        return True

    async def close(self) -> None:
        """Stop the reaper (the agent ended its stages before closing its executors)."""
        await asyncio.to_thread(self._closer)

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
        if self.run_as is not None:
            env.update(self.run_as.environment())
            try:  # the workspace (sources, artifacts, workdir) becomes the user's
                await asyncio.to_thread(chown_tree, workspace, self.run_as.uid, self.run_as.gid)
            except OSError as exc:
                return ExecutionResult(
                    StageStatus.ERROR, message=f"cannot give the workspace to {self.run_as.name}: {exc}"
                )
        env.update(spec.env)
        env.update(spec.secrets)
        prefix = f"{self._owner}/{self._instance}/"
        if not self._reaper.serves(prefix):
            await asyncio.to_thread(self._reaper.start, prefix)
        marker = f"{prefix}{context.lease_id or uuid.uuid4().hex}"
        env[STAGE_MARKER] = marker
        deadline = time.monotonic() + spec.timeout_s
        try:
            total = len(spec.commands)
            for index, command in enumerate(spec.commands, 1):
                announce(on_output, index, total, command)
                result = await self._run_one(command, cwd, env, on_output, cancel, deadline, spec.timeout_s)
                if result is not None:
                    return dataclasses.replace(result, command=index)
            return ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)
        finally:
            if self._namespace is None:
                # Daemons that left the stage's process group (setsid), found by their marker.
                await asyncio.to_thread(kill_marked, marker)

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
        if self._namespace is None:
            argv: tuple[str, ...] = (*self._drop, self.shell, "-c", command)
        else:  # the shell is the namespace's first process (see COMMAND_PRELUDE)
            argv = (*self._namespace, *self._drop, self.shell, "-c", COMMAND_PRELUDE + command)
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _CommandProtocol(splitter),
                *argv,
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
