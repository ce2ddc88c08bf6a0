"""The agent process's runtime: register, serve leases until drained or stopped, shut down cleanly.

Everything runs on one asyncio event loop over one gRPC channel (`agent.client`). `Agent` owns the
lifecycle and the leases held; each concept lives in its own module:

* **Identity** – `agent.session`: the stored agent token, or a registration to get one; one
  re-registration when the controller stops accepting the token.
* **Leases and heartbeats** – `agent.leases`: one Lease stream (reopened with backoff), heartbeats
  every interval. Leases survive a broken stream: a running stage keeps running while the
  controller is away.
* **Logs** – `agent.logstream`: one StreamLogs call carries the output of every lease
  (`agent.logs.LogShipper` batches and numbers it); after a reconnect everything unacknowledged is
  sent again, in order.
* **Stages** – `agent.stage` (with `agent.artifacts` and `agent.git`): at most `capacity` at once,
  each in a fresh workspace under `<work dir>/workspaces/`.
* **Failures** – `agent.client.classify` reads every failed call the same way; a call the controller
  refuses for good ends the agent (`agent.errors.AgentExit`).
* **Fencing** – a LEASE_GONE answer to a call about the lease (ABORTED or NOT_FOUND), a heartbeat's
  lost_lease_ids, a LogAck.lease_lost or a CancelStage(LEASE_LOST) means the lease belongs to
  someone else now: the stage is killed, its buffered logs dropped, and nothing more is sent for it.
* **Drain** – on SIGTERM/SIGINT (or the controller's Drain) the Lease stream is closed, a heartbeat
  says draining, running stages finish and report, and `run()` returns 0. A second signal kills the
  running stages and ends at once with exit status 1 (their leases expire and the controller retries
  them). An operator's drain only pauses leasing (see `agent.leases`).

One agent process owns a state dir (a lock file), so two agents never share an identity, a Git
cache or workspaces; workspaces a crashed agent left behind are removed at start.

**What stages can reach** – the state dir holds only the token and the lock (0700, files 0600) and
is never under the work dir (`agent.settings.check_layout`), so no workspace has it a `../..` away;
agents from before this layout kept workspaces and the Git cache in it, which are removed at start.
Local stages inherit the agent's environment without its credentials
(`agent.executors.environment`); the executors contain what stages start (see each executor).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import shutil
import socket
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent import __version__
from agent.client import ControllerClient
from agent.contract.logformat import about, bind_stage
from agent.contract.types import CancelReason, StageLease, StageSpec
from agent.errors import AgentExit
from agent.executors.registry import Executors
from agent.git.fetch import CACHE_DIR, HOME_DIR, GitFetcher
from agent.leases import LeaseLoops
from agent.logs import LogShipper
from agent.logstream import LogStreamLoop
from agent.pending import PENDING_FILE, PendingReport, forget_pending, load_pending
from agent.reporting import ReportBound
from agent.session import Session
from agent.settings import AgentSettings, check_layout
from agent.stage import ACK_TIMEOUT_S, Stage, StageRunner
from agent.state import StateError

__all__ = ["Agent"]

log = logging.getLogger("agent")


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
        self._session = Session(settings, executors.advertised, version, lambda: self._draining)
        self._shipper = LogShipper(on_lease_lost=lambda lease_id: self.lose(lease_id, "log ack"))
        self._logs = LogStreamLoop(self._session, self._shipper)
        self._leases = LeaseLoops(self._session, self)
        #: Fills the workspaces of stages that name a source (shared, so the git cache is too).
        self.git = GitFetcher(settings.work_root)
        self._bound = ReportBound(
            settings.report_wait_s, address=self._session.address, state_dir=settings.state_dir
        )
        self._runner = StageRunner(
            session=self._session,
            shipper=self._shipper,
            logs=self._logs,
            executors=executors,
            git=self.git,
            work_dir=settings.work_root / WORKSPACES,
            capacity=settings.capacity,
            lose=self.lose,
            cancel=self.cancel,
            ack_timeout_s=ack_timeout_s,
            bound=self._bound,
        )
        # Streams carry the token from when they were opened: reopen them after a re-registration.
        self._session.on_new_token(self._leases.close_stream)
        self._session.on_new_token(self._logs.reopen)
        self._session.on_new_token(self._hide_credentials)
        self._stages: dict[str, Stage] = {}
        self._draining = False
        self._aborting = False
        self._exit: AgentExit | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- public surface

    @property
    def agent_id(self) -> str:
        """The id the controller gave this agent ("" until authenticated)."""
        return self._session.agent_id

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
        self._bound.stopping()
        log.info(
            "draining (%s): taking no new leases, finishing %d running stage(s)",
            reason,
            len(self.running_lease_ids),
        )
        self._leases.close_stream()
        self._leases.heartbeat_soon()
        self._check_drained()

    def stop(self, outcome: str = "their leases will expire") -> None:
        """Kill running stages without reporting them (their leases expire and get retried).

        `outcome` says in the log what becomes of them (an embedding controller may record them
        itself, see controller.cli.stopping).
        """
        if self._aborting:
            return
        self._aborting = True
        self._draining = True
        self._bound.abort()
        running = [s for s in self._stages.values() if not s.lost and s.reporting_since is None]
        if running:
            log.warning("stopping now: killing %d running stage(s); %s", len(running), outcome)
        for stage in running:
            stage.lost = True
            stage.cancel.set()
        # Stages that finished report if the controller answers now, else keep their result.
        self._leases.close_stream()
        self._check_drained()

    async def run(self) -> int:
        """Register (or reuse the stored token), then serve leases until drained or stopped.

        Returns 0 after a clean drain; raises AgentExit (exit status and a one-line message) when the
        agent cannot go on: registration refused, token revoked, state dir unusable, a call refused
        for good, or `stop()`.
        """
        lock = _lock_state_dir(self.settings.state_dir)
        client = self._session.open()
        try:
            try:
                await asyncio.to_thread(_prepare_dirs, self.settings)
                # Nothing of an earlier process of this agent (same state dir) keeps running.
                await asyncio.to_thread(self.executors.claim, agent_key(self.settings))
                self._hide_credentials()
                await self._session.authenticate()
                self._hide_credentials()
                if not self._draining:
                    self._deliver_kept()
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
                for loop_coro in (self._leases.lease_loop(), self._logs.run(), self._leases.heartbeat_loop()):
                    self._spawn(loop_coro)
                await self._done.wait()
        finally:
            await self._shutdown(client)
            os.close(lock)
        if self._exit is not None:
            raise self._exit
        kept = self._bound.kept
        if kept:
            path = self.settings.state_dir / PENDING_FILE
            raise AgentExit(
                1,
                f"stopped with {kept} stage result(s) the controller at {self._session.address} did not "
                f"take: kept in {path}, reported at the next start",
            )
        if self._aborting:
            raise AgentExit(1, "stopped before running stages finished; their leases will be retried")
        return 0

    def _hide_credentials(self) -> None:
        """Keep the agent's own credentials out of what local stages inherit (called on each new token)."""
        self.executors.hide_credentials(self.settings.registration_token, self._session.client.token)

    # --- the leases held (called by agent.leases, agent.stage and the log shipper)

    def take(self, lease: StageLease) -> None:
        """A new lease: start its stage (a repeat of a lease already held is ignored)."""
        if lease.lease_id in self._stages:
            log.debug("lease %s received twice; ignoring the repeat", lease.lease_id)
            return
        stage = Stage(lease)
        self._stages[lease.lease_id] = stage
        log.info("stage leased", extra=about(stage.ref))
        stage.task = self._spawn(self._run_stage(stage))

    def cancel(self, lease_id: str, reason: CancelReason, message: str = "") -> None:
        """The controller wants a stage stopped; LEASE_LOST means the lease is gone (see `lose`)."""
        if reason is CancelReason.LEASE_LOST:
            self.lose(lease_id, "cancelled as lost by the controller")
            return
        stage = self._stages.get(lease_id)
        if stage is not None:
            stage.request_cancel(reason, message)

    def lose(self, lease_id: str, why: str) -> None:
        """The lease is no longer ours: kill its stage, drop its logs, send nothing more about it."""
        stage = self._stages.get(lease_id)
        if stage is None or stage.lost:
            return
        log.warning("lease lost (%s): stopping the stage, reporting nothing", why, extra=about(stage.ref))
        stage.lost = True
        stage.cancel_reason = CancelReason.LEASE_LOST
        stage.cancel.set()
        self._shipper.discard(lease_id)

    async def _run_stage(self, stage: Stage) -> None:
        bind_stage(stage.ref)  # this task's own context: its log lines name the stage
        try:
            await self._runner.run(stage)
        finally:
            self._stages.pop(stage.lease_id, None)
            self._check_drained()

    def _deliver_kept(self) -> None:
        """Report again the results an earlier stop of this agent kept (see agent.pending).

        Each is held as a lease until the controller took it: the Lease stream lists it, so the
        controller keeps the lease rather than running the stage again.
        """
        try:
            kept = [
                k for k in load_pending(self.settings.state_dir) if k.controller == self.settings.controller
            ]
        except StateError as exc:
            raise AgentExit(2, str(exc)) from None
        if kept:
            log.info("reporting %d stage result(s) kept when this agent last stopped", len(kept))
        for report in kept:
            lease = StageLease(
                report.lease_id,
                report.run_id,
                report.stage_run_id,
                report.attempt,
                datetime.now(UTC),
                StageSpec(name=report.stage, index=0, commands=()),
            )
            stage = Stage(lease)
            self._stages[lease.lease_id] = stage
            stage.task = self._spawn(self._deliver(stage, report))

    async def _deliver(self, stage: Stage, report: PendingReport) -> None:
        try:
            if await self._runner.deliver(stage, report):
                await asyncio.to_thread(forget_pending, self.settings.state_dir, report.lease_id)
        finally:
            self._stages.pop(stage.lease_id, None)
            self._check_drained()

    def _check_drained(self) -> None:
        if self._draining and not self._stages:
            self._done.set()

    # --- tasks

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

    # --- shutdown

    async def _shutdown(self, client: ControllerClient) -> None:
        """Stop the loops, kill what still runs (reporting nothing), say goodbye, close the channel."""
        if self._stages and (self._exit is not None or self._aborting):
            for stage in self._stages.values():
                if self._exit is None and stage.reporting_since is not None:
                    continue  # finished: it reports, or keeps its result, within moments
                stage.lost = True
                stage.cancel.set()
        stage_tasks = [s.task for s in self._stages.values() if s.task is not None]
        if stage_tasks:
            await asyncio.wait(stage_tasks, timeout=10)
        self._leases.close_stream()
        if self._draining and self._exit is None and self.agent_id:
            # Tell the controller at once that we take nothing more (best effort).
            await self._leases.heartbeat(timeout=1.0, reauthenticate=False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await client.close()


def _lock_state_dir(state_dir: Path) -> int:
    """Hold an exclusive lock on the state dir for the process's lifetime (one agent per state dir).

    Two agents sharing a state dir would share one identity and delete each other's workspaces.
    Returns the lock file's descriptor (closing it releases the lock; so does the process dying).
    The state dir is made private (0700) here, also when an operator created it with a wider mode.
    """
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
        fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
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


def agent_key(settings: AgentSettings) -> str:
    """A stable name of this agent on this host: what its stage processes and containers carry.

    Derived from the host name and the state dir (one agent process per state dir), not from the
    agent id, which is known only after registering and changes if the agent registers again.
    """
    identity = f"{socket.gethostname()}\0{os.path.realpath(settings.state_dir)}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


#: Under the work dir: one directory per lease (the stage's workspace).
WORKSPACES = "workspaces"
#: What agents before the state/work split kept in the state dir (workspaces, Git cache, git's HOME).
_LEGACY_IN_STATE_DIR = ("work", "git-cache", "git-home")


def _prepare_dirs(settings: AgentSettings) -> None:
    """Check the layout, make the work dir (private), tidy an old layout, remove stale workspaces."""
    # Stages run as another user must reach their workspace (traverse, not list); nothing else.
    shared = 0o711 if settings.run_as else 0o700
    try:
        check_layout(settings.state_dir, settings.work_root)
        settings.work_root.mkdir(mode=shared, parents=True, exist_ok=True)
        os.chmod(settings.work_root, shared)
        for name, mode in ((WORKSPACES, shared), (CACHE_DIR, 0o700), (HOME_DIR, 0o700)):
            (settings.work_root / name).mkdir(mode=mode, exist_ok=True)
            os.chmod(settings.work_root / name, mode)
    except ValueError as exc:
        raise AgentExit(2, str(exc)) from None
    except OSError as exc:
        raise AgentExit(2, f"cannot use work dir {settings.work_root}: {exc.strerror}") from None
    for name in _LEGACY_IN_STATE_DIR:
        old = settings.state_dir / name
        if old.is_dir() and not old.is_symlink():
            log.info("removing %s: workspaces and the Git cache now live in %s", old, settings.work_root)
            shutil.rmtree(old, ignore_errors=True)
    _clean_workspaces(settings.work_root / WORKSPACES)


def _clean_workspaces(work: Path) -> None:
    """Remove workspaces an earlier agent process left behind (nothing runs before we start)."""
    if work.is_dir():
        for entry in work.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
