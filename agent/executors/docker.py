"""Run stages in Docker containers: one container per stage, like `docker run --rm`.

This is the only module that imports the `docker` SDK. A stage becomes one container from its image
whose entrypoint is `/bin/sh -c` with a generated script (see `render_script`) that runs the stage's
commands in order, prints a header (a marker and the command's number) before each, and stops at
the first failure with that command's exit code. The reader turns each header into the command's
announcement (`agent.executors.base.announce`); the workspace is bind-mounted at `/workspace`.

The SDK is blocking, so every engine call runs in a worker thread; a dedicated thread per stage reads
the attached output stream and hands complete lines back to the event loop. Every container carries
`buildit.*` labels naming the agent process that owns it, so that a later agent on the same host can
remove the containers a crashed one left behind (`reap_orphans`) without touching live ones.

Why one module past 500 lines: it is the one owner of the docker SDK, and a stage's container
lifecycle (create, attach, wait, kill on cancel or timeout, remove, reap) shares its engine calls and
threads; split, the SDK would have more than one importer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils import parse_repository_tag
from docker.utils.socket import frames_iter

from agent.contract.quantities import format_memory
from agent.contract.types import ExecutionResult, Resources, StageSpec, StageStatus
from agent.executors.base import (
    DEFAULT_STAGE_LIMITS,
    NO_CONTEXT,
    ExecutorError,
    OutputCallback,
    StageContext,
    announce,
    piece_callback,
)
from agent.executors.lines import LineSplitter
from agent.executors.script import HEADER as _HEADER
from agent.executors.script import LAST as _LAST
from agent.executors.script import LINE as _LINE
from agent.executors.script import WORKSPACE_MOUNT, Output, container_workdir, render_script
from agent.executors.script import add_line as _add_line
from agent.executors.script import add_piece as _add_piece

__all__ = ["DockerExecutor", "PullPolicy", "container_workdir", "render_script"]

log = logging.getLogger(__name__)

PullPolicy = Literal["missing", "always", "never"]
_PULL_POLICIES: Final = frozenset(get_args(PullPolicy))

LABEL_MANAGED: Final = "buildit.managed"
LABEL_STAGE: Final = "buildit.stage"
LABEL_PID: Final = "buildit.pid"
LABEL_PID_START: Final = "buildit.pid_start"
LABEL_HOST: Final = "buildit.host"
LABEL_LEASE: Final = "buildit.lease"
LABEL_AGENT: Final = "buildit.agent"

_MAX_MESSAGE_CHARS: Final = 300
_DRAIN_AFTER_KILL_S: Final = 10.0  # how long to wait for the output stream to end after a kill
_DEFAULT_HOST: Final = "unix:///var/run/docker.sock"


# --------------------------------------------------------------------------- pure helpers


def limits(resources: Resources) -> dict[str, Any]:
    """The container's limits (`create_host_config` arguments) for a stage's resources.

    Memory and swap get the same limit (no swap beyond it: a stage over its memory is killed, not
    slowed to a crawl); CPUs become a CFS quota, so a stage gets its share, not a pinned core.
    """
    out: dict[str, Any] = {}
    if resources.memory_bytes:
        out["mem_limit"] = out["memswap_limit"] = resources.memory_bytes
    if resources.cpu_millis:
        out["nano_cpus"] = resources.cpu_millis * 1_000_000
    if resources.pids:
        out["pids_limit"] = resources.pids
    return out


def _one_line(text: str, limit: int = _MAX_MESSAGE_CHARS) -> str:
    """Collapse whitespace (API errors can span lines) and cap the length of a user-facing message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    """A short reason for an engine error: the daemon's explanation, not the SDK's HTTP wrapping."""
    if isinstance(exc, APIError) and exc.explanation:
        return _one_line(str(exc.explanation))
    root = _root_os_error(exc)
    if root is not None and root.strerror:
        return _one_line(root.strerror)
    return _one_line(str(exc) or exc.__class__.__name__)


def _root_os_error(exc: BaseException) -> OSError | None:
    """Find the innermost OSError (e.g. "Connection refused") under layers of requests/urllib3 wrapping."""
    found: OSError | None = None
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            found = current
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return found


def _container_name(stage: str) -> str:
    """A unique, valid container name that still says which stage it belongs to (for `docker ps`)."""
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", stage).strip("-.")[:40] or "stage"
    return f"buildit-{slug}-{uuid.uuid4().hex[:12]}"


def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when the process does not exist.

    Paired with the pid it identifies a process even after the pid number is reused.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; fields 3.. follow it.
    fields = stat.rpartition(")")[2].split()
    return fields[22 - 3] if len(fields) > 22 - 3 else None


def _process_is_alive(pid: int, start_time: str) -> bool:
    """Whether the process that created a container still runs (same pid AND same start time)."""
    if os.path.isdir("/proc/self"):
        current = _process_start_time(pid)
        if current is None:
            return False
        return not start_time or current == start_time
    try:  # no procfs (e.g. macOS): the pid alone is the best evidence available
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- one stage's container


class _StageError(Exception):
    """A stage could not be started; the message is the one-line `ExecutionResult.message`."""


class _StageContainer:
    """The container of one stage run, and the hand-off that guarantees it gets removed.

    The container is created in a worker thread that `run` may stop waiting for (cancellation,
    timeout, task cancellation). Whichever of the two sides comes second, the creator learning it was
    abandoned or the cleaner learning it was created, removes the container, so none leaks.
    """

    def __init__(self, client: docker.DockerClient, stage: str) -> None:
        self.client = client
        self.name = _container_name(stage)
        self._lock = threading.Lock()
        self._created = False
        self._abandoned = False

    def mark_created(self) -> None:
        """Record that the engine created the container; remove it at once if nobody wants it now."""
        with self._lock:
            self._created = True
            abandoned = self._abandoned
        if abandoned:
            self.remove()
            raise _StageError("stage was abandoned while its container was being created")

    def abandon(self) -> None:
        """Called exactly once when `run` ends: remove the container if it exists (or once it does)."""
        with self._lock:
            self._abandoned = True
            created = self._created
        if created:
            self.remove()

    def oom_killed(self) -> bool:
        """Whether the kernel killed the exited container for going over its memory limit."""
        try:
            state = self.client.api.inspect_container(self.name).get("State", {})
        except (DockerException, OSError):
            return False
        return bool(state.get("OOMKilled"))

    def remove(self) -> None:
        """Force-remove (kills it if still running); already gone is fine."""
        try:
            self.client.api.remove_container(self.name, force=True)
        except NotFound:
            pass
        except (DockerException, OSError) as exc:
            log.warning("could not remove container %s: %s", self.name, _reason(exc))

    def kill(self) -> None:
        """Kill the stage's processes now (timeout/cancel); the output stream then ends by itself."""
        try:
            self.client.api.kill(self.name)
        except (DockerException, OSError) as exc:  # already exited or removed: nothing to kill
            log.debug("kill %s: %s", self.name, _reason(exc))


class _Frames:
    """The output chunks of an attach socket (stdout and stderr frames, in order), closable."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __iter__(self) -> Iterator[bytes]:
        for _stream, data in frames_iter(self._sock, tty=False):  # type: ignore[no-untyped-call]
            yield data

    def close(self) -> None:
        """Close the connection (the container has exited, or is being killed)."""
        with contextlib.suppress(OSError):
            self._sock.close()


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """call_soon_threadsafe that tolerates a loop which already closed (the run was torn down)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _settle(fut: asyncio.Future[int], value: int | BaseException) -> None:
    """Complete `fut` unless `run` already gave up on it."""
    if fut.done():
        return
    if isinstance(value, BaseException):
        fut.set_exception(value)
    else:
        fut.set_result(value)


def _discard(fut: asyncio.Future[Any]) -> None:
    """Forget a future `run` no longer needs without 'exception was never retrieved' noise."""
    if not fut.done():
        fut.cancel()
    elif not fut.cancelled():
        fut.exception()


# --------------------------------------------------------------------------- the executor


class DockerExecutor:
    """Runs each stage that names an image in its own container on a Docker engine."""

    name = "docker"
    applies_resources = True

    def __init__(
        self,
        network_mode: str = "bridge",
        pull_policy: PullPolicy = "missing",
        client: docker.DockerClient | None = None,
        defaults: Resources | None = None,
    ) -> None:
        """Use `client` (or one from the environment); prefer `connect()`, which also checks the engine.

        `network_mode` is passed to every container ("none" isolates stages from the network);
        `pull_policy` decides when images are pulled: "missing" (like `docker run`), "always"
        (a moving tag is refreshed every stage) or "never" (air-gapped hosts: only local images).
        `defaults` are the limits of a stage that sets none (`--stage-*`; DEFAULT_STAGE_LIMITS).
        """
        if pull_policy not in _PULL_POLICIES:
            raise ValueError(f"pull_policy must be one of {sorted(_PULL_POLICIES)}, not {pull_policy!r}")
        self.network_mode = network_mode
        self.pull_policy: PullPolicy = pull_policy
        self.defaults = defaults if defaults is not None else DEFAULT_STAGE_LIMITS
        self._client = client if client is not None else _open_client()
        self._hostname = socket.gethostname()
        self._pid = os.getpid()
        self._pid_start = _process_start_time(self._pid) or ""
        #: The agent this executor works for (`claim`); "" for `buildit run`.
        self._owner = ""

    @classmethod
    def connect(
        cls,
        network_mode: str = "bridge",
        pull_policy: PullPolicy = "missing",
        defaults: Resources | None = None,
    ) -> DockerExecutor:
        """Connect to the engine named by the environment (DOCKER_HOST etc.), fail fast, clean up.

        Raises `ExecutorError` with a one-line message when no engine answers, so an agent refuses to
        start instead of failing every stage later. Removes containers left by crashed earlier agents
        on this host. Blocking: call it at start-up, before serving stages.
        """
        executor = cls(
            network_mode=network_mode, pull_policy=pull_policy, client=_open_client(), defaults=defaults
        )
        try:
            reaped = executor.reap_orphans()
        except (DockerException, OSError) as exc:
            log.warning("could not look for orphaned containers: %s", _reason(exc))
        else:
            if reaped:
                log.info("removed %d container(s) left behind by earlier agents", reaped)
        return executor

    def claim(self, owner: str) -> int:
        """Work for agent `owner`: label containers with it; remove those it left earlier. Blocking.

        Called once the agent holds its state dir's lock, before it takes any lease: every
        container labelled with `owner` then belongs to an earlier process of this agent (killed,
        or its host rebooted), holds no lease of ours, and is removed, running or not.
        """
        self._owner = owner
        if not owner:
            return 0
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_AGENT}={owner}"]}
        removed = 0
        try:
            containers = cast(list[dict[str, Any]], self._client.api.containers(all=True, filters=filters))
            for container in containers:
                with contextlib.suppress(NotFound):
                    self._client.api.remove_container(container["Id"], force=True)
                    removed += 1
        except (DockerException, OSError) as exc:
            log.warning("could not remove the containers an earlier run of this agent left: %s", _reason(exc))
        if removed:
            log.info("removed %d container(s) an earlier run of this agent left", removed)
        return removed

    def can_run(self, spec: StageSpec) -> bool:
        """Containers need an image; stages without one belong to the local executor."""
        return bool(spec.image)

    async def run(
        self,
        spec: StageSpec,
        workspace: Path,
        on_output: OutputCallback,
        cancel: asyncio.Event,
        context: StageContext = NO_CONTEXT,
    ) -> ExecutionResult:
        """Run `spec` in one container and stream its output; see `Executor.run` for the contract.

        The timeout covers the whole stage, including an image pull. On timeout or cancellation the
        container is killed, the output already produced is still delivered, and the container is
        removed before returning, also when the task running this coroutine is itself cancelled.
        """
        if not spec.image:
            return _error("the docker executor needs a stage with an image")
        if cancel.is_set():
            return ExecutionResult(StageStatus.CANCELLED, message="cancelled before start")
        try:
            workdir = container_workdir(spec.workdir)
        except ValueError as exc:
            return _error(str(exc))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.timeout_s
        stage = _StageContainer(self._client, spec.name)
        exited: asyncio.Future[int] = loop.create_future()
        delivering = True
        piece = piece_callback(on_output)
        total = len(spec.commands)
        current = 0  # the command running (its header was seen); 0 before the first

        def deliver(items: Output) -> None:
            nonlocal current
            if delivering:
                for text, kind in items:
                    if kind == _HEADER:
                        if text == str(current + 1) and current < total:
                            current += 1
                            announce(on_output, current, total, spec.commands[current - 1])
                        else:  # not the next header: output that looks like one
                            on_output(text)
                    elif kind == _LINE or piece is None:
                        on_output(text)
                    else:
                        piece(text, kind == _LAST)

        cancel_wait = asyncio.ensure_future(cancel.wait())
        launch: asyncio.Future[None] = asyncio.ensure_future(
            asyncio.to_thread(self._launch, stage, spec, workspace, workdir, context, loop, deliver, exited)
        )
        try:
            if await _first(launch, cancel_wait, deadline, loop):
                try:
                    launch.result()
                except _StageError as exc:
                    return _error(str(exc))
                if await _first(exited, cancel_wait, deadline, loop):
                    try:
                        code = exited.result()
                    except (DockerException, OSError) as exc:
                        return _error(f"lost track of container {stage.name}: {_reason(exc)}")
                    if await asyncio.to_thread(stage.oom_killed):
                        # The kernel killed it at its memory limit (whatever exit code that left).
                        memory = spec.resources.over(self.defaults).memory_bytes
                        return ExecutionResult(
                            StageStatus.FAILED,
                            exit_code=code,
                            message=f"memory limit {format_memory(memory)}" if memory else "out of memory",
                            command=current,
                            oom_killed=True,
                        )
                    if code == 0:
                        return ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)
                    return ExecutionResult(
                        StageStatus.FAILED, exit_code=code, message=f"exit code {code}", command=current
                    )
            # Cancelled or timed out, before or after the container started.
            await asyncio.to_thread(stage.kill)
            if launch.done():
                await asyncio.wait({exited}, timeout=_DRAIN_AFTER_KILL_S)
            if cancel.is_set():
                return ExecutionResult(StageStatus.CANCELLED, message="cancelled", command=current)
            return ExecutionResult(
                StageStatus.TIMED_OUT, message=f"timed out after {spec.timeout_s:g}s", command=current
            )
        finally:
            delivering = False
            for fut in (cancel_wait, launch, exited):
                _discard(fut)
            await asyncio.to_thread(stage.abandon)

    def _launch(
        self,
        stage: _StageContainer,
        spec: StageSpec,
        workspace: Path,
        workdir: str,
        context: StageContext,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Output], None],
        exited: asyncio.Future[int],
    ) -> None:
        """Worker thread: (pull,) create, attach, start; output then flows from a reader thread.

        Attaching before starting (as `docker run` does) guarantees no early output is missed.
        Raises `_StageError` with a one-line message for anything that keeps the stage from starting.
        """
        assert spec.image
        api = self._client.api
        try:
            if self.pull_policy == "always":
                self._pull(spec.image)
            try:
                self._create(stage, spec, workspace, workdir, context)
            except ImageNotFound:
                if self.pull_policy == "never":
                    raise _StageError(
                        f"image '{spec.image}' is not present on the Docker engine and pulling is "
                        "disabled (pull policy: never)"
                    ) from None
                self._pull(spec.image)
                self._create(stage, spec, workspace, workdir, context)
            # One attach for output and stdin: this connection ending is how the container learns
            # that the agent died (see render_script).
            sock = api.attach_socket(stage.name, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            stream = _Frames(sock)
            threading.Thread(
                target=self._pump,
                args=(stage, stream, loop, deliver, exited),
                name=f"buildit-docker-{stage.name}",
                daemon=True,
            ).start()
            api.start(stage.name)
        except (DockerException, OSError) as exc:
            raise _StageError(
                f"could not start a container for stage '{spec.name}' from image '{spec.image}': "
                f"{_reason(exc)}"
            ) from None

    def _create(
        self, stage: _StageContainer, spec: StageSpec, workspace: Path, workdir: str, context: StageContext
    ) -> None:
        """Create the stage's container: workspace read-write, borrowed Git objects read-only."""
        api = self._client.api
        binds: dict[str, Mapping[str, str]] = {
            str(workspace.resolve()): {"bind": WORKSPACE_MOUNT, "mode": "rw"}
        }
        for shared in context.shared_objects:
            # At the same path, which the workspace's objects/info/alternates names; read-only, so
            # a stage (root in its container) cannot change what later builds check out.
            binds[str(shared)] = {"bind": str(shared), "mode": "ro"}
        api.create_container(
            image=spec.image,
            command=[render_script(spec.commands)],
            entrypoint=["/bin/sh", "-c"],
            environment={**spec.env, **spec.secrets},
            working_dir=workdir,
            name=stage.name,
            stdin_open=True,  # with stdin_once: closed when the agent's attach connection ends
            labels={
                LABEL_MANAGED: "true",
                LABEL_STAGE: spec.name,
                LABEL_PID: str(self._pid),
                LABEL_PID_START: self._pid_start,
                LABEL_HOST: self._hostname,
                LABEL_LEASE: context.lease_id,
                LABEL_AGENT: self._owner,
            },
            host_config=api.create_host_config(
                binds=binds, network_mode=self.network_mode, **limits(spec.resources.over(self.defaults))
            ),
        )
        stage.mark_created()

    def _pull(self, image: str) -> None:
        """Pull `image` once; errors (also those reported inside the progress stream) become one line."""
        repository, tag = parse_repository_tag(image)
        try:
            progress: Iterable[dict[str, Any]] = self._client.api.pull(
                repository, tag=tag or "latest", stream=True, decode=True
            )
            for message in progress:
                if "error" in message:
                    raise _StageError(f"could not pull image '{image}': {_one_line(str(message['error']))}")
        except (DockerException, OSError) as exc:
            raise _StageError(f"could not pull image '{image}': {_reason(exc)}") from None

    def _pump(
        self,
        stage: _StageContainer,
        stream: Iterable[bytes],
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Output], None],
        exited: asyncio.Future[int],
    ) -> None:
        """Reader thread: forward output lines until the stream ends, then report the exit code."""
        batch: Output = []
        splitter = LineSplitter(
            lambda text: _add_line(batch, text), lambda text, last: _add_piece(batch, text, last)
        )
        try:
            for chunk in stream:
                splitter.feed(chunk)
                if batch:
                    _post(loop, deliver, batch)
                    batch = []
            splitter.flush()
            if batch:
                _post(loop, deliver, batch)
            status = self._client.api.wait(stage.name)
            outcome: int | BaseException = int(status["StatusCode"])
        except (DockerException, OSError) as exc:
            outcome = exc
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(DockerException, OSError):
                    close()
        _post(loop, _settle, exited, outcome)

    def reap_orphans(self) -> int:
        """Remove containers that crashed earlier agents on this host left behind; return how many.

        A container is an orphan when the process named by its `buildit.pid` label is gone, or that pid
        now belongs to another process (start time differs). Containers of live agents, including
        this one, are never touched. Blocking.
        """
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HOST}={self._hostname}"]}
        containers = cast(list[dict[str, Any]], self._client.api.containers(all=True, filters=filters))
        removed = 0
        for container in containers:
            labels: dict[str, str] = container.get("Labels") or {}
            try:
                pid = int(labels.get(LABEL_PID, ""))
            except ValueError:
                continue  # not ours to judge
            if _process_is_alive(pid, labels.get(LABEL_PID_START, "")):
                continue
            try:
                self._client.api.remove_container(container["Id"], force=True)
            except NotFound:
                continue
            removed += 1
        return removed

    async def close(self) -> None:
        """Close the engine connection pool."""
        await asyncio.to_thread(self._client.close)


async def _first(
    fut: asyncio.Future[Any],
    cancel_wait: asyncio.Future[Any],
    deadline: float,
    loop: asyncio.AbstractEventLoop,
) -> bool:
    """Wait until `fut` is done (True), or the stage is cancelled or out of time (False)."""
    remaining = max(0.0, deadline - loop.time())
    await asyncio.wait({fut, cancel_wait}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    return fut.done()


def _error(message: str) -> ExecutionResult:
    return ExecutionResult(StageStatus.ERROR, message=_one_line(message, limit=2 * _MAX_MESSAGE_CHARS))


def _open_client() -> docker.DockerClient:
    """A client for the engine the environment names, verified with a ping; ExecutorError if none."""
    host = os.environ.get("DOCKER_HOST") or _DEFAULT_HOST
    try:
        client = docker.from_env(max_pool_size=32)
        client.ping()
    except (DockerException, OSError) as exc:
        raise ExecutorError(
            f"no Docker engine reachable at {host}: {_reason(exc)}; start dockerd or pass --executor local"
        ) from None
    return client
