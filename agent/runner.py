"""The agent loop: register, hold one Lease stream, run leased stages, ship their logs, report results.

Everything runs on one asyncio event loop over one gRPC channel (see `agent.client`):

* **Lease stream** – exactly one `Lease` call is open at a time; it is reopened with jittered
  exponential backoff (0.1 s doubling to 5 s, reset once a stream worked) whenever it ends. Leases
  survive a broken stream: a running stage keeps running while the controller is away.
* **Log stream** – one `StreamLogs` call carries the output of every lease (`LogShipper` batches
  and numbers it). After a reconnect, everything not yet acknowledged is sent again, in order.
* **Heartbeat** – every `heartbeat_interval_ms`, listing the running leases (which extends them);
  every running stage also calls `ExtendLease`, the fallback path for a cancel missed while the Lease
  stream was down.
* **Stages** – at most `capacity` at once. Per stage: RUNNING first, then the executor with its output
  masked and shipped, then (once every log chunk of the lease is acknowledged, so the stored log is
  complete when the stage is shown finished) the terminal status.
* **Fencing** – a LEASE_GONE answer to a call about the lease (ABORTED or NOT_FOUND, see
  `agent.client.classify`, the one reading of status codes), a heartbeat's lost_lease_ids, a
  LogAck.lease_lost or a CancelStage(LEASE_LOST) means the lease belongs to someone else now: the
  stage is killed, its buffered logs dropped, and nothing more is sent for it.
* **Drain** – on SIGTERM/SIGINT (or the controller's Drain) the Lease stream is closed, a heartbeat
  says draining, running stages finish and report, and `run()` returns 0. A second signal kills the
  running stages and ends at once with exit status 1 (their leases expire and the controller retries
  them). An operator's drain (HeartbeatResponse.operator_drain) is not the agent's: it only logs
  it and stays up, because the controller simply offers no leases until the operator resumes it.

* **Workspaces** – each stage gets a fresh directory under `<state_dir>/work/`. A stage with a
  `source` gets a clone of its repository at the exact commit (`agent.git.fetch`: a per-repository
  cache under `<state_dir>/git-cache/`, the agent token sent as an HTTP header, never in argv);
  a stage with `needs` gets the artifacts of those stages (DownloadArtifacts) before its commands
  run. After the commands succeeded, the files matching its `artifacts` globs are uploaded one by
  one (UploadArtifact: header, then 256 KiB chunks), and only then is SUCCEEDED reported, so a
  dependent stage never starts without them. Paths follow `agent.workspace`'s rules (nothing read
  or written outside the workspace); a broken rule, a failed fetch or a refused upload ends the
  stage in ERROR with a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import random
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar

from agent import __version__
from agent.client import (
    FAILED_PRECONDITION,
    RESOURCE_EXHAUSTED,
    UNIMPLEMENTED,
    ControllerClient,
    FailureKind,
    LeaseStream,
    LogStreamCall,
    RpcFailure,
    classify,
)
from agent.contract.types import (
    ArtifactAck,
    ArtifactHeader,
    ArtifactPart,
    CancelReason,
    CancelStage,
    Drain,
    ExecutionResult,
    HeartbeatRequest,
    LeaseEvent,
    LeaseRequest,
    Ping,
    RegisterRequest,
    StageLease,
    StageSpec,
    StageStatus,
    StageUpdate,
)
from agent.executors.base import Executor, ExecutorError
from agent.executors.local import LocalExecutor
from agent.git.fetch import GitFetcher, GitFetchError, redact_url
from agent.logs import LogShipper, Masker
from agent.settings import AgentSettings, ExecutorChoice
from agent.state import AgentState, StateError, clear_state, load_state, save_state
from agent.workspace import ArtifactError, create_artifact_file, find_artifacts

__all__ = [
    "ARTIFACT_CHUNK_BYTES",
    "DEFAULT_HEARTBEAT_MS",
    "Agent",
    "AgentExit",
    "Backoff",
    "Executors",
    "build_executors",
]

log = logging.getLogger("agent")

DEFAULT_HEARTBEAT_MS: Final = 2000
#: How long, while the log stream is connected, a finished stage waits for its last acks before it
#: reports its status anyway (a controller that never acks must not hold the lease forever).
ACK_TIMEOUT_S: Final = 30.0
#: Size of the data chunks of artifact uploads (the wire allows up to 1 MiB).
ARTIFACT_CHUNK_BYTES: Final = 256 * 1024
#: An upload may take this long plus one second per MiB before it is given up (and retried).
_UPLOAD_BASE_TIMEOUT_S: Final = 60.0
#: Files listed one by one in the stage log after an upload; beyond that only the total.
_LISTED_ARTIFACTS: Final = 20

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")

_T = TypeVar("_T")


class AgentExit(Exception):
    """The agent must stop: `code` is the process exit status, the message one line for the operator."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backoff:
    """Jittered exponential backoff: `initial` doubling up to `maximum`, reset after a success.

    Each delay is drawn from [d/2, d] for the current step d, so a fleet of agents that lost the same
    controller does not reconnect in lockstep.
    """

    def __init__(
        self, initial: float = 0.1, maximum: float = 5.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self._step = initial

    def next(self) -> float:
        """The delay before the next attempt (and double the step for the one after)."""
        step = min(self._step, self.maximum)
        self._step = min(self._step * 2, self.maximum)
        return step * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        """Start again from `initial` (the last attempt worked)."""
        self._step = self.initial


@dataclass
class Executors:
    """The executors this agent has: always local, docker when an engine answered at start-up."""

    local: Executor
    docker: Executor | None = None

    @property
    def advertised(self) -> tuple[str, ...]:
        """Executor kinds sent in RegisterRequest (decides which stages the controller leases us)."""
        return ("docker", "local") if self.docker is not None else ("local",)

    def for_spec(self, spec: StageSpec) -> Executor:
        """Docker for a stage with an image when available, else local (which ignores the image)."""
        if spec.image and self.docker is not None:
            return self.docker
        return self.local

    async def close(self) -> None:
        """Release the executors' resources."""
        if self.docker is not None:
            await self.docker.close()
        await self.local.close()


def _docker_configured() -> bool:
    """Cheap check before importing the docker SDK: is any engine named or present on this host?"""
    return bool(os.environ.get("DOCKER_HOST")) or os.path.exists("/var/run/docker.sock")


def build_executors(choice: ExecutorChoice, network: str = "bridge") -> Executors:
    """The executors for `--executor`: local only, docker + local (required), or docker if it works.

    Blocking (it pings the Docker engine): call it before the event loop starts. Raises ExecutorError
    when docker is required but unusable. In "auto" mode the docker SDK is not even imported on a
    host with no engine configured, which keeps such agents small.
    """
    local = LocalExecutor()
    if choice == "local":
        log.info("executors: local")
        return Executors(local)
    if choice == "auto" and not _docker_configured():
        log.info("executors: local (no Docker engine configured: DOCKER_HOST unset, no /var/run/docker.sock)")
        return Executors(local)
    try:
        from agent.executors.docker import DockerExecutor

        docker = DockerExecutor.connect(network_mode=network)
    except (ExecutorError, ImportError) as exc:
        if choice == "docker":
            raise ExecutorError(str(exc)) from None
        log.info("executors: local (Docker unusable: %s)", exc)
        return Executors(local)
    log.info("executors: docker (network %s) and local", network)
    return Executors(local, docker)


def _now() -> datetime:
    return datetime.now(UTC)


def _workspace_name(lease_id: str) -> str:
    """A directory name for a lease: the id itself when it is a safe name, else a hash of it."""
    if _SAFE_NAME.fullmatch(lease_id) and lease_id not in (".", ".."):
        return lease_id
    return hashlib.sha256(lease_id.encode()).hexdigest()[:32]


@dataclass(eq=False)
class _Stage:
    """One lease this agent holds, from StageLease to its final update (or its loss)."""

    lease: StageLease
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: CancelReason | None = None
    cancel_message: str = ""
    #: The lease is no longer ours (or the agent is aborting): send nothing more about it.
    lost: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def lease_id(self) -> str:
        return self.lease.lease_id


class Agent:
    """One agent process's runtime. `await run()` returns the exit status.

    Signals are not installed here (the caller owns the process): call `drain()` for a graceful stop
    and `stop()` to kill running stages, or `on_signal()` which does the first, then the second.
    """

    def __init__(
        self,
        settings: AgentSettings,
        executors: Executors,
        *,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        version: str = __version__,
    ) -> None:
        self.settings = settings
        self.executors = executors
        self.ack_timeout_s = ack_timeout_s
        self.version = version
        self.agent_id = ""
        self.heartbeat_interval_s = DEFAULT_HEARTBEAT_MS / 1000
        self._client: ControllerClient | None = None
        self._shipper = LogShipper(on_lease_lost=lambda lease_id: self._lose(lease_id, "log ack"))
        self._stages: dict[str, _Stage] = {}
        self._slots = asyncio.Semaphore(settings.capacity)
        self._draining = False
        self._operator_drained = False
        self._aborting = False
        self._exit: AgentExit | None = None
        self._done = asyncio.Event()
        self._heartbeat_now = asyncio.Event()
        self._lease_stream: LeaseStream | None = None
        self._log_call: LogStreamCall | None = None
        self._logs_connected = False
        self._auth_lock = asyncio.Lock()
        self._reregistered = False
        self._auth_ok_since_register = True
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Fills the workspaces of stages that name a source (shared, so the git cache is too).
        self.git = GitFetcher(settings.state_dir)

    # --- public surface

    @property
    def draining(self) -> bool:
        """True once the agent stopped taking leases."""
        return self._draining

    @property
    def running_lease_ids(self) -> tuple[str, ...]:
        """Leases held right now (running, queued for a slot, or reporting)."""
        return tuple(lease_id for lease_id, stage in self._stages.items() if not stage.lost)

    @property
    def free_slots(self) -> int:
        """Slots free for new leases (0 while draining)."""
        if self._draining:
            return 0
        return max(self.settings.capacity - len(self.running_lease_ids), 0)

    def on_signal(self) -> None:
        """SIGTERM/SIGINT: the first drains, the second stops running stages."""
        if self._draining:
            self.stop()
        else:
            self.drain("signal")

    def drain(self, reason: str) -> None:
        """Take no new leases; finish and report running stages; then `run()` returns 0."""
        if self._draining:
            return
        self._draining = True
        log.info(
            "draining (%s): taking no new leases, finishing %d running stage(s)",
            reason,
            len(self.running_lease_ids),
        )
        if self._lease_stream is not None:
            self._lease_stream.cancel()
        self._heartbeat_now.set()
        self._check_drained()

    def stop(self) -> None:
        """Kill running stages without reporting them (their leases expire and get retried)."""
        if self._aborting:
            return
        self._aborting = True
        self._draining = True
        running = self.running_lease_ids
        if running:
            log.warning("stopping now: killing %d running stage(s); their leases will expire", len(running))
        for stage in self._stages.values():
            stage.lost = True
            stage.cancel.set()
        if self._lease_stream is not None:
            self._lease_stream.cancel()
        self._check_drained()

    async def run(self) -> int:
        """Register (or reuse the stored token), then serve leases until drained or stopped.

        Returns 0 after a clean drain; raises AgentExit (exit status and a one-line message) when the
        agent cannot go on: registration refused, token revoked, state dir unusable, or `stop()`.
        """
        lock = _lock_state_dir(self.settings.state_dir)
        client = self._client = ControllerClient(self.settings.controller)
        try:
            try:
                await asyncio.to_thread(_clean_workspaces, self.settings.state_dir / "work")
                await self._authenticate()
            except AgentExit as exc:
                self._exit = exc
            if self._exit is None and not self._draining:
                log.info(
                    "agent %s (%s) serving %s with capacity %d",
                    self.settings.name,
                    self.agent_id,
                    self.settings.controller,
                    self.settings.capacity,
                )
                for loop_coro in (self._lease_loop(), self._log_loop(), self._heartbeat_loop()):
                    self._spawn(loop_coro)
                await self._done.wait()
        finally:
            await self._shutdown(client)
            os.close(lock)
        if self._exit is not None:
            raise self._exit
        if self._aborting:
            raise AgentExit(1, "stopped before running stages finished; their leases will be retried")
        return 0

    # --- registration and authentication

    async def _authenticate(self) -> None:
        """Use the stored agent token for this controller, or register to get one."""
        settings = self.settings
        try:
            state = load_state(settings.state_dir)
        except StateError as exc:
            raise AgentExit(2, str(exc)) from None
        if state is not None and state.controller == settings.controller:
            self._use_state(state)
            log.info("using the stored identity %s from %s", state.agent_id, settings.state_dir)
            return
        if state is not None:
            log.info(
                "%s holds an identity for controller %s, not %s: registering",
                settings.state_dir,
                state.controller,
                settings.controller,
            )
        await self._register()

    def _use_state(self, state: AgentState) -> None:
        assert self._client is not None
        self.agent_id = state.agent_id
        self._client.token = state.agent_token
        if state.heartbeat_interval_ms > 0:
            self.heartbeat_interval_s = state.heartbeat_interval_ms / 1000

    async def _register(self) -> None:
        """RegisterRequest with our name, labels, executors, capacity and version; store the token."""
        assert self._client is not None
        settings = self.settings
        if not settings.registration_token:
            raise AgentExit(
                2,
                f"no agent token in {settings.state_dir} and no registration token: pass "
                "--registration-token (or set BUILDIT_REGISTRATION_TOKEN) to register this agent",
            )
        request = RegisterRequest(
            registration_token=settings.registration_token,
            name=settings.name,
            labels=dict(settings.labels),
            executors=self.executors.advertised,
            capacity=settings.capacity,
            version=self.version,
        )
        backoff = Backoff()
        attempts = 0
        while True:
            try:
                response = await self._client.register(request)
                break
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=False)
                if kind is FailureKind.REAUTHENTICATE:  # the registration token itself is refused
                    raise AgentExit(
                        1,
                        f"registration refused by {settings.controller}: {exc.details or exc.code} "
                        "(check --registration-token)",
                    ) from None
                if kind is FailureKind.FATAL and exc.code == FAILED_PRECONDITION:
                    raise AgentExit(
                        1,
                        f"controller {settings.controller} refused agent version {self.version}: "
                        f"{exc.details or exc.code}",
                    ) from None
                if kind is not FailureKind.RETRY:
                    raise AgentExit(1, f"registration with {settings.controller} failed: {exc}") from None
                delay = backoff.next()
                attempts += 1
                if attempts == 1 or attempts % 12 == 0:
                    log.warning("controller %s unreachable (%s); retrying", settings.controller, exc)
            if await self._sleep_unless_draining(delay):
                return
        if not response.agent_id or not response.agent_token:
            raise AgentExit(1, f"controller {settings.controller} returned no agent id or token")
        state = AgentState(
            agent_id=response.agent_id,
            agent_token=response.agent_token,
            controller=settings.controller,
            heartbeat_interval_ms=max(response.heartbeat_interval_ms, 0),
        )
        try:
            save_state(settings.state_dir, state)
        except OSError as exc:
            raise AgentExit(1, f"cannot store the agent token in {settings.state_dir}: {exc}") from None
        self._use_state(state)
        self.heartbeat_interval_s = (response.heartbeat_interval_ms or DEFAULT_HEARTBEAT_MS) / 1000
        log.info(
            "registered with %s as %s (controller %s)",
            settings.controller,
            response.agent_id,
            response.controller_version or "?",
        )

    async def _reauthenticate(self, failed_token: str, failure: RpcFailure) -> None:
        """The controller refused our token: register again once, if we can, else stop.

        Several calls can fail at the same moment with the same token; the first re-registers and the
        others see the new token and simply retry.
        """
        assert self._client is not None
        async with self._auth_lock:
            if self._client.token != failed_token:
                return
            state_file = self.settings.state_dir / "agent.json"
            if not self.settings.registration_token:
                raise AgentExit(
                    1,
                    f"the controller does not accept the agent token in {state_file} ({failure}); pass "
                    "--registration-token to register again",
                )
            if self._reregistered and not self._auth_ok_since_register:
                raise AgentExit(1, f"the controller refused the token it just issued ({failure})")
            log.warning("the controller does not accept our agent token (%s): registering again", failure)
            clear_state(self.settings.state_dir)
            await self._register()
            self._reregistered = True
            self._auth_ok_since_register = False
            # Streams carry the token from when they were opened: reopen them with the new one.
            if self._lease_stream is not None:
                self._lease_stream.cancel()
            if self._log_call is not None:
                self._log_call.cancel()

    def _authenticated(self) -> None:
        self._auth_ok_since_register = True

    # --- background loops

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, AgentExit):
            self._fail(exc)
        else:
            log.error("internal error", exc_info=exc)
            self._fail(AgentExit(1, f"internal error: {exc!r}"))

    def _fail(self, exc: AgentExit) -> None:
        if self._exit is None:
            self._exit = exc
        self._done.set()

    async def _sleep_unless_draining(self, delay: float) -> bool:
        """Sleep up to `delay`; True when the agent started draining meanwhile (stop waiting)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while not self._draining:
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 0.1))
        return True

    async def _lease_loop(self) -> None:
        """Keep exactly one Lease stream open until draining; reopen it with backoff when it ends."""
        assert self._client is not None
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        failures = 0
        while not self._draining:
            token = self._client.token
            stream = self._client.open_lease_stream(
                LeaseRequest(self.agent_id, self.free_slots, self.running_lease_ids)
            )
            self._lease_stream = stream
            opened = loop.time()
            working = False
            try:
                async with contextlib.aclosing(stream.events()) as events:
                    async for event in events:
                        if not working:
                            working = True
                            failures = 0
                            backoff.reset()
                            self._authenticated()
                        self._on_event(event)
                        if self._draining:
                            break
                reason = "closed by the controller"
            except RpcFailure as exc:
                if self._draining:
                    break
                kind = classify(exc.code, lease_scoped=False)
                if kind is FailureKind.REAUTHENTICATE:
                    await self._reauthenticate(token, exc)
                    continue
                if kind is FailureKind.FATAL:
                    raise _refused("the Lease stream", exc) from None
                reason = str(exc)
            except (AgentExit, asyncio.CancelledError):
                raise
            except Exception as exc:  # a bug in handling an event must not end the agent
                log.exception("lease stream failed unexpectedly")
                reason = repr(exc)
            finally:
                stream.cancel()
                self._lease_stream = None
            if self._draining:
                break
            if loop.time() - opened >= backoff.maximum:
                backoff.reset()
            failures += 1
            delay = backoff.next()
            # The loss of a working connection is news; each further failed attempt is not.
            if failures == 1 or failures % 12 == 0:
                log.warning("lease stream ended (%s); reconnecting", reason)
            else:
                log.debug("lease stream attempt failed (%s); retrying in %.2fs", reason, delay)
            await self._sleep_unless_draining(delay)

    def _on_event(self, event: LeaseEvent | None) -> None:
        if isinstance(event, StageLease):
            self._take(event)
        elif isinstance(event, CancelStage):
            self._cancel(event.lease_id, event.reason, event.message)
        elif isinstance(event, Drain):
            self.drain(f"requested by the controller{': ' + event.reason if event.reason else ''}")
        elif isinstance(event, Ping):
            pass
        else:
            log.debug("ignoring a lease stream event this agent version does not know")

    async def _log_loop(self) -> None:
        """Keep one StreamLogs stream open; on every (re)connect, resend all unacknowledged chunks."""
        assert self._client is not None
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            token = self._client.token
            call = self._client.open_log_stream()
            self._log_call = call
            self._shipper.rewind()
            opened = loop.time()
            progress = asyncio.Event()
            reader = asyncio.create_task(self._read_acks(call, progress))
            writer = asyncio.create_task(self._write_chunks(call))
            failure: RpcFailure | None = None
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._logs_connected = False
                self._log_call = None
                call.cancel()
                for task in (reader, writer):
                    task.cancel()
                results = await asyncio.gather(reader, writer, return_exceptions=True)
            for result in results:
                if isinstance(result, AgentExit):
                    raise result
                if isinstance(result, RpcFailure) and failure is None:
                    failure = result
                elif isinstance(result, Exception) and not isinstance(result, RpcFailure):
                    # Whatever broke, the remedy is the same: a new stream resends what is unacked.
                    log.warning("log stream failed unexpectedly; reconnecting", exc_info=result)
            if failure is not None:
                kind = classify(failure.code, lease_scoped=False)
                if kind is FailureKind.REAUTHENTICATE:
                    await self._reauthenticate(token, failure)
                    continue
                if kind is FailureKind.FATAL:
                    raise _refused("the log stream (StreamLogs)", failure)
            gap = results[0] is False
            if progress.is_set() or loop.time() - opened >= backoff.maximum:
                backoff.reset()
            if gap:  # reconnect soon (the backoff was just reset), and never in a tight loop
                log.info("log stream: the controller is missing chunks; resending from its last ack")
            delay = backoff.next()
            log.debug("log stream ended (%s); reconnecting in %.2fs", failure or "closed", delay)
            await asyncio.sleep(delay)

    async def _read_acks(self, call: LogStreamCall, progress: asyncio.Event) -> bool:
        """Apply acks until the stream ends (True) or an ack reveals a gap (False)."""
        while True:
            ack = await call.receive()
            if ack is None:
                return True
            progress.set()
            self._logs_connected = True  # an ack proves the stream works end to end
            self._authenticated()
            if not self._shipper.acknowledge(ack):
                return False

    async def _write_chunks(self, call: LogStreamCall) -> None:
        while True:
            chunk = await self._shipper.next_chunk()
            await call.send(chunk)

    async def _heartbeat_loop(self) -> None:
        """Heartbeat every interval (at once when draining starts); act on lost leases and drains."""
        assert self._client is not None
        while True:
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
                async with asyncio.timeout(self.heartbeat_interval_s):
                    await self._heartbeat_now.wait()
            self._heartbeat_now.clear()
            try:
                await self._heartbeat()
            except (AgentExit, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("heartbeat failed unexpectedly")

    async def _heartbeat(self, timeout: float | None = None, *, reauthenticate: bool = True) -> None:
        assert self._client is not None
        token = self._client.token
        request = HeartbeatRequest(self.agent_id, self.running_lease_ids, self.free_slots, self._draining)
        try:
            if timeout is None:
                response = await self._client.heartbeat(request)
            else:
                async with asyncio.timeout(timeout):
                    response = await self._client.heartbeat(request)
        except TimeoutError:
            return
        except RpcFailure as exc:
            kind = classify(exc.code, lease_scoped=False)
            if not reauthenticate:  # the goodbye heartbeat at shutdown: best effort only
                log.debug("heartbeat failed: %s", exc)
            elif kind is FailureKind.REAUTHENTICATE:
                await self._reauthenticate(token, exc)
            elif kind is FailureKind.FATAL:
                raise _refused("heartbeats", exc) from None
            else:
                log.debug("heartbeat failed: %s", exc)
            return
        self._authenticated()
        for lease_id in response.lost_lease_ids:
            self._lose(lease_id, "heartbeat")
        if response.operator_drain != self._operator_drained:
            # An operator's drain: the controller offers nothing until resumed. Stay up (no drain
            # of our own, which would end the process), so a resume brings work back at once.
            self._operator_drained = response.operator_drain
            log.info(
                "drained by an operator: running stages finish, no new ones until resumed"
                if response.operator_drain
                else "resumed by an operator: taking stages again"
            )
        if response.draining and not response.operator_drain and not self._draining:
            self.drain("requested by the controller")

    # --- leases and stages

    def _take(self, lease: StageLease) -> None:
        if lease.lease_id in self._stages:
            log.debug("lease %s received twice; ignoring the repeat", lease.lease_id)
            return
        stage = _Stage(lease)
        self._stages[lease.lease_id] = stage
        log.info("lease %s: stage '%s' (attempt %d)", lease.lease_id, lease.spec.name, lease.attempt)
        stage.task = self._spawn(self._run_stage(stage))

    def _cancel(self, lease_id: str, reason: CancelReason, message: str = "") -> None:
        if reason is CancelReason.LEASE_LOST:
            self._lose(lease_id, "cancelled as lost by the controller")
            return
        stage = self._stages.get(lease_id)
        if stage is None or stage.lost or stage.cancel.is_set():
            return
        log.info("lease %s: cancel (%s)%s", lease_id, reason, f": {message}" if message else "")
        stage.cancel_reason = reason
        stage.cancel_message = message
        stage.cancel.set()

    def _lose(self, lease_id: str, why: str) -> None:
        """The lease is no longer ours: kill its stage, drop its logs, send nothing more about it."""
        stage = self._stages.get(lease_id)
        if stage is None or stage.lost:
            return
        log.warning("lease %s lost (%s): stopping its stage, reporting nothing", lease_id, why)
        stage.lost = True
        stage.cancel_reason = CancelReason.LEASE_LOST
        stage.cancel.set()
        self._shipper.discard(lease_id)

    def _check_drained(self) -> None:
        if self._draining and not self._stages:
            self._done.set()

    async def _run_stage(self, stage: _Stage) -> None:
        lease_id = stage.lease_id
        extender: asyncio.Task[None] | None = None
        report: asyncio.Future[StageStatus | _Refused | None] | None = None
        try:
            async with self._slots:
                if stage.lost:
                    return
                started_at: datetime | None = None
                if not stage.cancel.is_set():
                    started_at = _now()
                    running = StageUpdate(lease_id, StageStatus.RUNNING, started_at=started_at)
                    # Reported while the workspace is prepared (a fetch takes longer than the round
                    # trip), and awaited before any command runs: a refused report still means the
                    # stage's commands never start.
                    report = asyncio.ensure_future(
                        self._lease_call(stage, lambda: self._client_or_fail().update_stage(running))
                    )
                extender = asyncio.create_task(self._extend_loop(stage))
                self._shipper.open(lease_id)
                result = self._final_result(stage, await self._execute(stage, report))
                if report is not None:
                    await report  # the final update must not overtake the running one
                if stage.lost:
                    return
                await self._wait_logs(stage)
                if stage.lost:
                    return
                update = StageUpdate(
                    lease_id,
                    result.status,
                    exit_code=result.exit_code,
                    message=result.message,
                    started_at=started_at,
                    finished_at=_now(),
                )
                sent = await self._lease_call(stage, lambda: self._client_or_fail().update_stage(update))
                if isinstance(sent, _Refused):
                    # Nothing more can be said about it: the lease expires and the controller retries it.
                    log.error("lease %s: the controller refused its final status: %s", lease_id, sent.failure)
                elif not stage.lost:
                    log.info("lease %s: %s", lease_id, result.status)
        except (AgentExit, asyncio.CancelledError):
            raise
        except Exception:
            # A bug here must not take the other stages down: drop this lease (it is no longer listed
            # in heartbeats, so the controller requeues it) and keep serving.
            log.exception("lease %s: internal error; abandoning the lease", lease_id)
            stage.lost = True
            stage.cancel.set()
        finally:
            if report is not None and not report.done():
                report.cancel()
            if extender is not None:
                extender.cancel()
            self._shipper.discard(lease_id)
            self._stages.pop(lease_id, None)
            self._check_drained()

    def _client_or_fail(self) -> ControllerClient:
        assert self._client is not None
        return self._client

    async def _execute(
        self, stage: _Stage, admitted: Awaitable[StageStatus | _Refused | None] | None = None
    ) -> ExecutionResult:
        """Run the stage in a fresh workspace: sources and needed artifacts in, commands, artifacts out.

        `admitted` is the controller's answer to the "running" report: the commands start only once
        it accepted it (the lease may have been lost, or the run cancelled, in the meantime).
        """
        spec = stage.lease.spec
        lease_id = stage.lease_id
        if stage.cancel.is_set():
            return ExecutionResult(StageStatus.CANCELLED, message="cancelled before it started")
        workspace = self.settings.state_dir / "work" / _workspace_name(lease_id)
        try:
            await asyncio.to_thread(_fresh_dir, workspace)
        except OSError as exc:
            return ExecutionResult(StageStatus.ERROR, message=f"cannot create workspace {workspace}: {exc}")
        executor = self.executors.for_spec(spec)
        # The agent token is masked too: no stage output can carry it to the controller's logs.
        mask = Masker([*spec.secrets.values(), self._client_or_fail().token])
        shipper = self._shipper

        def on_output(line: str) -> None:
            shipper.add(lease_id, mask(line))

        # BuildIt's own lines ("restored 3 artifact file(s)", errors) join the stage's one combined log.
        say = on_output

        try:
            if spec.source is not None:
                failed = await self._until_cancelled(stage, self._fetch_source(stage, workspace, say))
                if failed is not None:
                    return failed
            if spec.needs:
                failed = await self._until_cancelled(stage, self._download_artifacts(stage, workspace, say))
                if failed is not None:
                    return failed
            if admitted is not None:
                recorded = await admitted
                if stage.lost:
                    return ExecutionResult(StageStatus.CANCELLED, message="lease lost before it ran")
                if isinstance(recorded, _Refused):
                    message = f"the controller refused to record the stage running: {recorded.failure}"
                    say(f"error: {message}")
                    return ExecutionResult(StageStatus.ERROR, message=message)
                if recorded is not None and recorded.finished:
                    self._cancel(lease_id, CancelReason.USER, f"the controller recorded it {recorded}")
            if stage.cancel.is_set():
                return ExecutionResult(StageStatus.CANCELLED, message="cancelled before its commands ran")
            try:
                result = await executor.run(spec, workspace, on_output, stage.cancel)
            except Exception as exc:  # executors report stage problems as results; this is a bug or crash
                log.exception("lease %s: executor %s failed", lease_id, executor.name)
                return ExecutionResult(StageStatus.ERROR, message=f"executor {executor.name} failed: {exc}")
            if result.ok and spec.artifacts and not stage.cancel.is_set():
                failed = await self._until_cancelled(stage, self._upload_artifacts(stage, workspace, say))
                if failed is not None:
                    return failed
            return result
        finally:
            await asyncio.to_thread(shutil.rmtree, workspace, True)

    @staticmethod
    async def _until_cancelled(
        stage: _Stage, work: Coroutine[Any, Any, ExecutionResult | None]
    ) -> ExecutionResult | None:
        """Run a preparation or upload step, abandoning it as soon as the stage is cancelled.

        Returns the step's result (None: it went fine), or CANCELLED when the cancel came first
        (`_final_result` turns that into TIMED_OUT for a timeout).
        """
        task = asyncio.ensure_future(work)
        cancelled = asyncio.ensure_future(stage.cancel.wait())
        try:
            await asyncio.wait({task, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            return ExecutionResult(StageStatus.CANCELLED, message="cancelled")
        return task.result()

    async def _fetch_source(
        self, stage: _Stage, workspace: Path, say: Callable[[str], None]
    ) -> ExecutionResult | None:
        """Fill the workspace with the stage's repository at its commit (see agent.git.fetch)."""
        source = stage.lease.spec.source
        assert source is not None
        try:
            # A process on this host may borrow the agent's git cache; a container sees only its
            # workspace, which must then hold the objects itself.
            local = self.executors.for_spec(stage.lease.spec) is self.executors.local
            await self.git.checkout(
                source, workspace, self._client_or_fail().token, say, self_contained=not local
            )
        except GitFetchError as exc:
            say(f"error: {exc}")
            return ExecutionResult(StageStatus.ERROR, message=str(exc))
        except OSError as exc:
            message = f"cannot prepare the workspace from {redact_url(source.repo_url)}: {exc}"
            say(f"error: {message}")
            return ExecutionResult(StageStatus.ERROR, message=message)
        return None

    async def _download_artifacts(
        self, stage: _Stage, workspace: Path, say: Callable[[str], None]
    ) -> ExecutionResult | None:
        """Write the artifacts of the stages this one needs into its workspace (DownloadArtifacts).

        Retried from the start while the controller is unreachable (every file is simply written
        again); a refused path or a corrupted file ends the stage in ERROR.
        """
        client = self._client_or_fail()
        needs = ", ".join(stage.lease.spec.needs)
        backoff = Backoff()
        while not stage.lost:
            token = client.token
            try:
                files, size, producers = await self._receive_artifacts(stage, workspace)
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, f"DownloadArtifacts: {exc}")
                    return ExecutionResult(StageStatus.ERROR, message="lease lost")
                if kind is FailureKind.REAUTHENTICATE:
                    await self._reauthenticate(token, exc)
                    continue
                if kind is FailureKind.RETRY:
                    delay = backoff.next()
                    log.debug("lease %s: artifact download failed (%s); retrying", stage.lease_id, exc)
                    await asyncio.sleep(delay)
                    continue
                if exc.code == UNIMPLEMENTED:
                    message = (
                        "the controller cannot send artifacts (DownloadArtifacts unimplemented): upgrade it"
                    )
                else:
                    message = f"cannot download the artifacts of {needs}: {exc.details or exc.code}"
                say(f"error: {message}")
                return ExecutionResult(StageStatus.ERROR, message=message)
            except (ArtifactError, _TransferError) as exc:
                say(f"error: {exc}")
                return ExecutionResult(StageStatus.ERROR, message=str(exc))
            except OSError as exc:
                message = f"cannot write the artifacts of {needs} into the workspace: {exc}"
                say(f"error: {message}")
                return ExecutionResult(StageStatus.ERROR, message=message)
            if files:  # silence when the needed stages made none: most stages declare no artifacts
                say(f"restored {files} artifact file(s), {size} bytes, from {', '.join(producers)}")
            return None
        return ExecutionResult(StageStatus.ERROR, message="lease lost")

    async def _receive_artifacts(self, stage: _Stage, workspace: Path) -> tuple[int, int, list[str]]:
        """One DownloadArtifacts call written to disk; returns (files, bytes, producing stages)."""
        client = self._client_or_fail()
        incoming: _Incoming | None = None
        files = size = 0
        producers: list[str] = []
        try:
            async for part in client.download_artifacts(stage.lease_id):
                if isinstance(part, ArtifactHeader):
                    if incoming is not None:
                        await incoming.finish()
                    handle = await asyncio.to_thread(create_artifact_file, workspace, part.path)
                    incoming = _Incoming(part, handle)
                    files += 1
                    size += part.size
                    if part.stage and part.stage not in producers:
                        producers.append(part.stage)
                elif incoming is None:
                    raise _TransferError("the controller sent artifact data before any header")
                else:
                    await incoming.write(part)
            if incoming is not None:
                await incoming.finish()
                incoming = None
        finally:
            if incoming is not None:
                incoming.handle.close()
        return files, size, producers

    async def _upload_artifacts(
        self, stage: _Stage, workspace: Path, say: Callable[[str], None]
    ) -> ExecutionResult | None:
        """Upload the files matching the stage's artifact globs, one UploadArtifact call each."""
        spec = stage.lease.spec
        try:
            files, empty = await asyncio.to_thread(find_artifacts, workspace, spec.artifacts)
        except (ArtifactError, OSError) as exc:
            message = f"artifacts: {exc}"
            say(f"error: {message}")
            return ExecutionResult(StageStatus.ERROR, message=message)
        for pattern in empty:
            say(f"warning: artifact pattern '{pattern}' matched no files")
        total = 0
        for rel, file in files:
            try:
                size, digest = await asyncio.to_thread(_size_and_sha256, file)
            except OSError as exc:
                message = f"artifacts: cannot read '{rel}': {exc.strerror or exc}"
                say(f"error: {message}")
                return ExecutionResult(StageStatus.ERROR, message=message)
            outcome = await self._upload_one(stage, ArtifactHeader(stage.lease_id, rel, size, digest), file)
            if isinstance(outcome, ExecutionResult):
                if not stage.lost:
                    say(f"error: {outcome.message}")
                return outcome
            total += size
            if len(files) <= _LISTED_ARTIFACTS:
                dedup = ", already stored" if outcome.deduplicated else ""
                say(f"uploaded artifact {rel} ({size} bytes{dedup})")
        if files:
            say(f"uploaded {len(files)} artifact file(s), {total} bytes")
        return None

    async def _upload_one(
        self, stage: _Stage, header: ArtifactHeader, file: Path
    ) -> ArtifactAck | ExecutionResult:
        """One artifact, retried from its start while the controller is unreachable."""
        client = self._client_or_fail()
        timeout = _UPLOAD_BASE_TIMEOUT_S + header.size / (1024 * 1024)
        backoff = Backoff()
        while not stage.lost:
            token = client.token
            try:
                return await client.upload_artifact(_artifact_parts(header, file), timeout)
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, f"UploadArtifact: {exc}")
                    break
                if kind is FailureKind.REAUTHENTICATE:
                    await self._reauthenticate(token, exc)
                    continue
                if kind is FailureKind.RETRY:
                    delay = backoff.next()
                    log.debug(
                        "lease %s: upload of %s failed (%s); retrying", stage.lease_id, header.path, exc
                    )
                    await asyncio.sleep(delay)
                    continue
                if exc.code == RESOURCE_EXHAUSTED:
                    return ExecutionResult(StageStatus.ERROR, message=exc.details or str(exc))
                if exc.code == UNIMPLEMENTED:
                    return ExecutionResult(
                        StageStatus.ERROR,
                        message="the controller does not accept artifacts (UploadArtifact "
                        "unimplemented): upgrade it",
                    )
                return ExecutionResult(
                    StageStatus.ERROR,
                    message=f"cannot upload artifact '{header.path}': {exc.details or exc.code}",
                )
        return ExecutionResult(StageStatus.ERROR, message="lease lost")

    @staticmethod
    def _final_result(stage: _Stage, result: ExecutionResult) -> ExecutionResult:
        """Turn the executor's CANCELLED into what the cancel asked for (TIMED_OUT for a timeout)."""
        if result.status is not StageStatus.CANCELLED:
            return result
        if stage.cancel_reason is CancelReason.TIMEOUT:
            return ExecutionResult(StageStatus.TIMED_OUT, message=stage.cancel_message or "timed out")
        if stage.cancel_message:
            return ExecutionResult(StageStatus.CANCELLED, result.exit_code, stage.cancel_message)
        return result

    async def _wait_logs(self, stage: _Stage) -> None:
        """Wait until every log chunk of the lease is acknowledged (bounded while connected)."""
        loop = asyncio.get_running_loop()
        waited_connected = 0.0
        while not stage.lost:
            started = loop.time()
            if await self._shipper.wait_acked(stage.lease_id, 0.5):
                return
            if self._logs_connected:
                waited_connected += loop.time() - started
            if waited_connected >= self.ack_timeout_s:
                log.warning(
                    "lease %s: logs still unacknowledged after %.0fs; reporting the status anyway",
                    stage.lease_id,
                    waited_connected,
                )
                return

    async def _extend_loop(self, stage: _Stage) -> None:
        """ExtendLease every heartbeat interval: keeps the lease and catches cancels missed meanwhile."""
        client = self._client_or_fail()
        while not stage.lost:
            await asyncio.sleep(self.heartbeat_interval_s)
            token = client.token
            try:
                response = await client.extend_lease(stage.lease_id)
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, f"ExtendLease: {exc}")
                    return
                if kind is FailureKind.REAUTHENTICATE:
                    await self._reauthenticate(token, exc)
                elif kind is FailureKind.FATAL:
                    # Heartbeats still extend the lease; only this fallback path for missed cancels ends.
                    log.warning(
                        "lease %s: ExtendLease refused (%s); relying on heartbeats", stage.lease_id, exc
                    )
                    return
                continue
            self._authenticated()
            if response.cancel_requested:
                self._cancel(stage.lease_id, response.cancel_reason or CancelReason.USER)

    async def _lease_call(self, stage: _Stage, call: Callable[[], Awaitable[_T]]) -> _T | _Refused | None:
        """A write about one lease, retried while the controller is unreachable (RETRY codes).

        Returns None when the lease is gone (LEASE_GONE: the stage is then stopped), `_Refused` when
        the controller refuses the write for good (FATAL: the caller decides what that ends).
        """
        backoff = Backoff()
        while not stage.lost:
            token = self._client_or_fail().token
            try:
                result = await call()
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, str(exc))
                    return None
                if kind is FailureKind.REAUTHENTICATE:
                    await self._reauthenticate(token, exc)
                    continue
                if kind is FailureKind.FATAL:
                    return _Refused(exc)
                delay = backoff.next()
                log.debug("lease %s: update failed (%s); retrying in %.2fs", stage.lease_id, exc, delay)
                await asyncio.sleep(delay)
                continue
            self._authenticated()
            return result
        return None

    # --- shutdown

    async def _shutdown(self, client: ControllerClient) -> None:
        """Stop the loops, kill what still runs (reporting nothing), say goodbye, close the channel."""
        if self._stages and (self._exit is not None or self._aborting):
            for stage in self._stages.values():
                stage.lost = True
                stage.cancel.set()
        stage_tasks = [s.task for s in self._stages.values() if s.task is not None]
        if stage_tasks:
            await asyncio.wait(stage_tasks, timeout=10)
        if self._lease_stream is not None:
            self._lease_stream.cancel()
        if self._draining and self._exit is None and self.agent_id:
            # Tell the controller at once that we take nothing more (best effort).
            await self._heartbeat(timeout=1.0, reauthenticate=False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await client.close()


def _refused(what: str, failure: RpcFailure) -> AgentExit:
    """The exit of an agent whose agent-wide call the controller refuses for good (a FATAL code)."""
    return AgentExit(1, f"the controller refuses {what} of this agent: {failure} (retrying cannot help)")


def _lock_state_dir(state_dir: Path) -> int:
    """Hold an exclusive lock on the state dir for the process's lifetime (one agent per state dir).

    Two agents sharing a state dir would share one identity and delete each other's workspaces.
    Returns the lock file's descriptor (closing it releases the lock; so does the process dying).
    """
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AgentExit(2, f"cannot use state dir {state_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AgentExit(
            2, f"state dir {state_dir} is in use by another agent; give each agent its own --state-dir"
        ) from None
    return fd


def _clean_workspaces(work: Path) -> None:
    """Remove workspaces an earlier agent process left behind (nothing runs before we start)."""
    if work.is_dir():
        for entry in work.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Refused:
    """A write about a lease the controller refused for good (a FATAL code): retrying cannot help."""

    failure: RpcFailure


class _TransferError(Exception):
    """A downloaded artifact does not match its header (size or sha256) or arrived out of order."""


class _Incoming:
    """One artifact being written during DownloadArtifacts, checked against its header at the end."""

    def __init__(self, header: ArtifactHeader, handle: BinaryIO) -> None:
        self.header = header
        self.handle = handle
        self.written = 0
        self.digest = hashlib.sha256()

    async def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written > self.header.size:
            raise _TransferError(
                f"artifact '{self.header.path}' is larger than the {self.header.size} bytes announced"
            )
        self.digest.update(data)
        await asyncio.to_thread(self.handle.write, data)

    async def finish(self) -> None:
        await asyncio.to_thread(self.handle.close)
        header = self.header
        if self.written != header.size:
            raise _TransferError(
                f"artifact '{header.path}' arrived with {self.written} of its {header.size} bytes"
            )
        if header.sha256 and self.digest.hexdigest() != header.sha256:
            raise _TransferError(f"artifact '{header.path}' arrived corrupted (sha256 mismatch)")


def _size_and_sha256(file: Path) -> tuple[int, str]:
    """Size and hex sha256 of a file (the upload header announces both before the content)."""
    digest = hashlib.sha256()
    size = 0
    with open(file, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def _artifact_parts(header: ArtifactHeader, file: Path) -> AsyncIterator[ArtifactPart]:
    """An UploadArtifact request stream: the header, then the file in ARTIFACT_CHUNK_BYTES chunks."""
    yield header
    handle = await asyncio.to_thread(open, file, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, ARTIFACT_CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


def _fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
