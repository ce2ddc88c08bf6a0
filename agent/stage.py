"""One attempt of a leased stage: report it running, fill its workspace, run it, report how it ended.

* **Order** – RUNNING is reported while the workspace is prepared and awaited before any command
  runs (a lease lost or a run cancelled meanwhile means the commands never start). Then: the
  repository at the stage's exact commit (`agent.git.fetch`: a per-repository cache under
  `<work dir>/git-cache/`, the agent token sent as an HTTP header, never in argv), the artifacts
  it needs (`agent.artifacts`), the executor with its output masked and shipped, the artifacts it
  made, and (once every log chunk of the lease is acknowledged, so the stored log is complete when
  the stage is shown finished) the terminal status.
* **Workspace** – a fresh directory under `<work dir>/workspaces/` per lease, removed afterwards.
* **Log** – BuildIt's own lines are marked (`agent.contract.logmarks`): each command's header, the
  agent's notes, and a closing line saying how the stage ended and in which command, written
  before the final status (so the stored log is complete when the stage shows finished). The
  final message names that command too (`agent.executors.base.outcome_message`).
* **Cancellation** – a cancel (Lease stream, ExtendLease, or the controller recording the stage
  finished) stops whatever step runs; a timeout reports TIMED_OUT.
* **Extend** – every running stage calls ExtendLease each heartbeat interval: it keeps the lease and
  is the fallback path for a cancel missed while the Lease stream was down.
* **Writes** – retried while the controller is unreachable; a LEASE_GONE answer (see
  `agent.client.classify`) stops the stage and sends nothing more; a refused RUNNING report (FATAL)
  ends it in ERROR before its commands; a refused final status is given up (the lease expires).
* **Stopping** – a result that cannot be reported says so in the log; once the agent is stopping
  it waits `--report-wait` for an unreachable controller, then keeps the result (logs and status)
  in the state dir (`agent.reporting`, `agent.pending`); `deliver` reports such a result at the
  next start.

Why one module past 500 lines: it is one concept, an attempt from its lease to its report (or the
loss of its lease); the reporting half shares the fencing and retry rules of every write above.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from agent.artifacts import ArtifactTransfer
from agent.backoff import Backoff, sleep_unless
from agent.client import FailureKind, RpcFailure, classify
from agent.contract import logmarks
from agent.contract.logformat import StageRef, about, stage_ref
from agent.contract.types import CancelReason, ExecutionResult, StageLease, StageStatus, StageUpdate
from agent.errors import AgentExit
from agent.executors.base import StageContext, outcome_message, resources_ignored
from agent.executors.registry import Executors
from agent.git.fetch import GitFetcher, GitFetchError, redact_url
from agent.logs import LogShipper
from agent.logstream import LogStreamLoop
from agent.masking import MIN_SECRET_CHARS, Masker, PieceMasker
from agent.pending import PendingReport
from agent.reporting import ReportBound
from agent.session import Session

__all__ = ["ACK_TIMEOUT_S", "Stage", "StageRunner"]

log = logging.getLogger("agent")

#: How long, while the log stream is connected, a finished stage waits for its last acks before it
#: reports its status anyway (a controller that never acks must not hold the lease forever).
ACK_TIMEOUT_S: Final = 30.0

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")

_T = TypeVar("_T")


@dataclass(eq=False)
class Stage:
    """One lease this agent holds, from StageLease to its final update (or its loss)."""

    lease: StageLease
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: CancelReason | None = None
    cancel_message: str = ""
    #: The lease is no longer ours (or the agent is aborting): send nothing more about it.
    lost: bool = False
    task: asyncio.Task[None] | None = None
    #: What log lines about this stage name (pipeline, run, stage, attempt, lease).
    ref: StageRef = field(init=False)
    #: When (loop time) it began to report its result, and which; None while it runs.
    reporting_since: float | None = None
    result: StageStatus | None = None
    #: When (loop time) it began to report itself running.
    admission_since: float | None = None
    #: What the log said about a controller it cannot report to (see ReportBound.note_unreachable).
    noted: str = ""

    def __post_init__(self) -> None:
        self.ref = stage_ref(self.lease)

    @property
    def lease_id(self) -> str:
        """The lease's id (the fencing token every write about it carries)."""
        return self.lease.lease_id

    def request_cancel(self, reason: CancelReason, message: str = "") -> None:
        """Stop the stage for `reason` (user or timeout); a no-op once lost or already cancelling."""
        if self.lost or self.cancel.is_set():
            return
        log.info("cancel (%s)%s", reason, f": {message}" if message else "", extra=about(self.ref))
        self.cancel_reason = reason
        self.cancel_message = message
        self.cancel.set()


@dataclass(frozen=True)
class _Refused:
    """A write about a lease the controller refused for good (a FATAL code): retrying cannot help."""

    failure: RpcFailure


class _GaveUp:
    """A write given up: the agent is stopping and the controller stayed unreachable too long."""


_GAVE_UP: Final = _GaveUp()


class StageRunner:
    """Runs the attempts of the agent's stages, at most `capacity` at once.

    `lose(lease_id, why)` is the agent's reaction to a lease found gone (stop the stage, drop its
    logs), `cancel(lease_id, reason, message)` to a cancel the controller asked for; `logs` tells
    whether the log stream works (how long to wait for the last acks).
    """

    def __init__(
        self,
        *,
        session: Session,
        shipper: LogShipper,
        logs: LogStreamLoop,
        executors: Executors,
        git: GitFetcher,
        work_dir: Path,
        capacity: int,
        lose: Callable[[str, str], None],
        cancel: Callable[[str, CancelReason, str], None],
        ack_timeout_s: float = ACK_TIMEOUT_S,
        bound: ReportBound | None = None,
    ) -> None:
        self._session = session
        self._shipper = shipper
        self._logs = logs
        self._executors = executors
        self._git = git
        self._work_dir = work_dir
        self._slots = asyncio.Semaphore(capacity)
        self._lose = lose
        self._cancel = cancel
        self._ack_timeout_s = ack_timeout_s
        self._bound = bound if bound is not None else ReportBound()
        self._artifacts = ArtifactTransfer(session, lose, self._bound)

    async def run(self, stage: Stage) -> None:
        """One attempt of a leased stage, from RUNNING to its final status (or the loss of its lease).

        Never raises for the stage's own problems, nor for a bug in running it: such a lease is
        dropped (the controller requeues it) so the agent's other stages go on.
        """
        lease_id = stage.lease_id
        extender: asyncio.Task[None] | None = None
        report: asyncio.Future[StageStatus | _Refused | _GaveUp | None] | None = None
        try:
            async with self._slots:
                if stage.lost:
                    return
                started_at: datetime | None = None
                if not stage.cancel.is_set():
                    started_at = _now()
                    running = StageUpdate(lease_id, StageStatus.RUNNING, started_at=started_at)
                    stage.admission_since = asyncio.get_running_loop().time()
                    # Reported while the workspace is prepared (a fetch takes longer than the round
                    # trip), and awaited before any command runs: a refused report still means the
                    # stage's commands never start.
                    report = asyncio.ensure_future(
                        self._lease_call(
                            stage, lambda: self._session.client.update_stage(running), bounded=True
                        )
                    )
                extender = asyncio.create_task(self._extend_loop(stage))
                # The agent's credentials are masked too: no stage output carries them to a log.
                masker = Masker(
                    [
                        *stage.lease.spec.secrets.values(),
                        self._session.client.token,
                        self._session.settings.registration_token,
                    ]
                )
                self._shipper.open(lease_id, masker)
                output = _StageOutput(self._shipper, lease_id, masker)
                result = self._final_result(stage, await self._execute(stage, masker, output, report))
                stage.reporting_since = asyncio.get_running_loop().time()
                stage.result = result.status
                if stage.lost:
                    return
                # Names the command it ended in; masked before it is cut to a quote. The closing
                # line goes to the log now; `_report` sends it with the rest before the status.
                message = masker(outcome_message(result, stage.lease.spec.commands, masker))
                output.end(result, len(stage.lease.spec.commands), message)
                update = StageUpdate(
                    lease_id,
                    result.status,
                    exit_code=result.exit_code,
                    message=message,
                    started_at=started_at,
                    finished_at=_now(),
                )
                if report is not None and isinstance(await report, _GaveUp):
                    # The final update must not overtake the running one: both wait for next time.
                    if not stage.lost:
                        self._keep(stage, update)
                    return
                await self._report(stage, update)
        except (AgentExit, asyncio.CancelledError):
            raise
        except Exception:
            # A bug here must not take the other stages down: drop this lease (it is no longer listed
            # in heartbeats, so the controller requeues it) and keep serving.
            log.exception("internal error; abandoning the lease")
            stage.lost = True
            stage.cancel.set()
        finally:
            if report is not None and not report.done():
                report.cancel()
            if extender is not None:
                extender.cancel()
            self._shipper.discard(lease_id)

    async def _execute(
        self,
        stage: Stage,
        masker: Masker,
        on_output: _StageOutput,
        admitted: Awaitable[StageStatus | _Refused | _GaveUp | None] | None = None,
    ) -> ExecutionResult:
        """Run the stage in a fresh workspace: sources and needed artifacts in, commands, artifacts out.

        `admitted` is the controller's answer to the "running" report: the commands start only once
        it accepted it (the lease may have been lost, or the run cancelled, in the meantime).
        """
        spec = stage.lease.spec
        lease_id = stage.lease_id
        if stage.cancel.is_set():
            return ExecutionResult(StageStatus.CANCELLED, message="cancelled before it started")
        workspace = self._work_dir / _workspace_name(lease_id)
        try:
            await asyncio.to_thread(_fresh_dir, workspace)
        except OSError as exc:
            return ExecutionResult(StageStatus.ERROR, message=f"cannot create workspace {workspace}: {exc}")
        executor = self._executors.for_spec(spec)
        # BuildIt's own lines ("restored 3 artifact file(s)", errors) join the stage's one combined
        # log, marked as BuildIt's (agent.contract.logmarks).
        say = on_output.note
        if spec.resources and not executor.applies_resources:
            say(resources_ignored(executor.name, spec.resources))
        if masker.too_short:
            say(
                f"buildit: {masker.too_short} secret value(s) shorter than {MIN_SECRET_CHARS} characters "
                "are not masked in this log"
            )

        try:
            if spec.source is not None:
                failed = await self._until_cancelled(stage, self._fetch_source(stage, workspace, say))
                if failed is not None:
                    return failed
            if spec.needs:
                failed = await self._until_cancelled(stage, self._artifacts.download(stage, workspace, say))
                if failed is not None:
                    return failed
            if admitted is not None:
                recorded = await admitted
                if stage.lost:
                    return ExecutionResult(StageStatus.CANCELLED, message="lease lost before it ran")
                if isinstance(recorded, _GaveUp):
                    # Its commands never ran: nothing to keep. Its lease expires and the controller
                    # leases it again, as for any agent that went away.
                    log.warning(
                        "lease %s: the controller did not record it running before the agent stopped; "
                        "it is left to the controller to run again",
                        lease_id,
                    )
                    stage.lost = True
                    return ExecutionResult(StageStatus.CANCELLED, message="the agent stopped")
                if isinstance(recorded, _Refused):
                    message = f"the controller refused to record the stage running: {recorded.failure}"
                    say(f"error: {message}")
                    return ExecutionResult(StageStatus.ERROR, message=message)
                if recorded is not None and recorded.finished:
                    stage.request_cancel(CancelReason.USER, f"the controller recorded it {recorded}")
            if stage.cancel.is_set():
                return ExecutionResult(StageStatus.CANCELLED, message="cancelled before its commands ran")
            borrows = spec.source is not None and not self._executors.self_contained(spec)
            shared = (self._git.borrowed_objects(spec.source),) if borrows and spec.source else ()
            context = StageContext(
                lease_id=lease_id,
                shared_objects=shared,
                attempt=stage.lease.attempt,
                run_id=stage.lease.run_id,
                source_token=self._session.client.token if spec.source is not None else "",
            )
            try:
                result = await executor.run(spec, workspace, on_output, stage.cancel, context)
            except Exception as exc:  # executors report stage problems as results; this is a bug or crash
                log.exception("executor %s failed", executor.name)
                return ExecutionResult(StageStatus.ERROR, message=f"executor {executor.name} failed: {exc}")
            if result.ok and spec.artifacts and not stage.cancel.is_set():
                failed = await self._until_cancelled(stage, self._artifacts.upload(stage, workspace, say))
                if failed is not None:
                    return failed
            return result
        finally:
            await asyncio.to_thread(shutil.rmtree, workspace, True)

    @staticmethod
    async def _until_cancelled(
        stage: Stage, work: Coroutine[Any, Any, ExecutionResult | None]
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
        self, stage: Stage, workspace: Path, say: Callable[[str], None]
    ) -> ExecutionResult | None:
        """Fill the workspace with the stage's repository at its commit (see agent.git.fetch)."""
        source = stage.lease.spec.source
        assert source is not None
        try:
            # The workspace borrows the cache's objects (a container gets them read-only), unless
            # its stage may not read the cache (run as another user): then it gets copies.
            await self._git.checkout(
                source,
                workspace,
                self._session.client.token,
                say,
                self_contained=self._executors.self_contained(stage.lease.spec),
            )
        except GitFetchError as exc:
            say(f"error: {exc}")
            return ExecutionResult(StageStatus.ERROR, message=str(exc))
        except OSError as exc:
            message = f"cannot prepare the workspace from {redact_url(source.repo_url)}: {exc}"
            say(f"error: {message}")
            return ExecutionResult(StageStatus.ERROR, message=message)
        return None

    @staticmethod
    def _final_result(stage: Stage, result: ExecutionResult) -> ExecutionResult:
        """Turn the executor's CANCELLED into what the cancel asked for (TIMED_OUT for a timeout)."""
        if result.status is not StageStatus.CANCELLED:
            return result
        if stage.cancel_reason is CancelReason.TIMEOUT:
            message = stage.cancel_message or "timed out"
            return dataclasses.replace(result, status=StageStatus.TIMED_OUT, message=message)
        if stage.cancel_message:
            return dataclasses.replace(result, message=stage.cancel_message)
        return result

    async def _report(self, stage: Stage, update: StageUpdate) -> None:
        """Send a finished stage's logs, then its final status; keep them if the stop cuts that short."""
        if stage.lost:
            return
        if not await self._wait_logs(stage):
            if not stage.lost:
                self._keep(stage, update)
            return
        sent = await self._lease_call(stage, lambda: self._session.client.update_stage(update), bounded=True)
        if isinstance(sent, _GaveUp):
            self._keep(stage, update)
        elif isinstance(sent, _Refused):
            # Nothing more can be said about it: the lease expires and the controller retries it.
            log.error("the controller refused the stage's final status: %s", sent.failure)
        elif not stage.lost:
            log.info("stage %s", update.status)

    async def deliver(self, stage: Stage, kept: PendingReport) -> bool:
        """Report a result an earlier process of this agent kept (see agent.pending).

        True when it is settled (taken by the controller, or no longer this agent's to report);
        False when it is still to be reported (the agent stopped again first).
        """
        self._shipper.restore(stage.lease_id, kept.chunks)
        stage.reporting_since = asyncio.get_running_loop().time()
        stage.result = kept.update.status
        try:
            if await self._wait_logs(stage):
                update = kept.update
                sent = await self._lease_call(
                    stage, lambda: self._session.client.update_stage(update), bounded=True
                )
                if isinstance(sent, _GaveUp):
                    return False
                if isinstance(sent, _Refused):
                    log.error(
                        "lease %s: the controller refused the kept result: %s", stage.lease_id, sent.failure
                    )
                elif not stage.lost:
                    log.info(
                        "lease %s: %s (kept since the agent last stopped)", stage.lease_id, update.status
                    )
            elif not stage.lost:
                return False
            if stage.lost:
                log.warning(
                    "lease %s (stage '%s'): the controller no longer holds this lease; its kept result "
                    "is dropped",
                    stage.lease_id,
                    kept.stage,
                )
            return True
        finally:
            self._shipper.discard(stage.lease_id)

    def _keep(self, stage: Stage, update: StageUpdate) -> None:
        lease = stage.lease
        self._bound.keep(
            PendingReport(
                controller=self._session.settings.controller,
                run_id=lease.run_id,
                stage_run_id=lease.stage_run_id,
                stage=lease.spec.name,
                attempt=lease.attempt,
                update=update,
                chunks=self._shipper.unsent(stage.lease_id),
            )
        )

    def _giving_up(self, stage: Stage) -> bool:
        since = stage.reporting_since if stage.reporting_since is not None else stage.admission_since
        return since is not None and self._bound.expired(since)

    def _unreachable(self, stage: Stage) -> None:
        status = stage.result or StageStatus.RUNNING
        stage.noted = self._bound.note_unreachable(stage.lease_id, stage.lease.spec.name, status, stage.noted)

    async def _wait_logs(self, stage: Stage) -> bool:
        """Wait until every log chunk of the lease is acknowledged (bounded while connected).

        True when the status may be reported now; False when the lease is lost, or the agent is
        stopping and waited its `--report-wait` for a controller that does not answer.
        """
        loop = asyncio.get_running_loop()
        waited_connected = 0.0
        while not stage.lost:
            started = loop.time()
            if await self._shipper.wait_acked(stage.lease_id, 0.5):
                return True
            if self._logs.connected:
                waited_connected += loop.time() - started
            else:
                self._unreachable(stage)
                if self._giving_up(stage):
                    return False
            if waited_connected >= self._ack_timeout_s:
                log.warning(
                    "logs still unacknowledged after %.0fs; reporting the status anyway", waited_connected
                )
                return True
        return False

    async def _extend_loop(self, stage: Stage) -> None:
        """ExtendLease every heartbeat interval: keeps the lease and catches cancels missed meanwhile."""
        client = self._session.client
        while not stage.lost:
            await asyncio.sleep(self._session.heartbeat_interval_s)
            token = client.token
            try:
                response = await client.extend_lease(stage.lease_id)
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, f"ExtendLease: {exc}")
                    return
                if kind is FailureKind.REAUTHENTICATE:
                    await self._session.reauthenticate(token, exc)
                elif kind is FailureKind.FATAL:
                    # Heartbeats still extend the lease; only this fallback path for missed cancels ends.
                    log.warning("ExtendLease refused (%s); relying on heartbeats", exc)
                    return
                continue
            self._session.authenticated()
            if response.cancel_requested:
                self._cancel(stage.lease_id, response.cancel_reason or CancelReason.USER, "")

    async def _lease_call(
        self, stage: Stage, call: Callable[[], Awaitable[_T]], *, bounded: bool = False
    ) -> _T | _Refused | _GaveUp | None:
        """A write about one lease, retried while the controller is unreachable (RETRY codes).

        Returns None when the lease is gone (LEASE_GONE: the stage is then stopped), `_Refused` when
        the controller refuses the write for good (FATAL: the caller decides what that ends),
        `_GaveUp` for a `bounded` write of a stopping agent that waited its `--report-wait`.
        """
        backoff = Backoff()
        while not stage.lost:
            token = self._session.client.token
            try:
                result = await call()
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, str(exc))
                    return None
                if kind is FailureKind.REAUTHENTICATE:
                    await self._session.reauthenticate(token, exc)
                    continue
                if kind is FailureKind.FATAL:
                    return _Refused(exc)
                if bounded and self._giving_up(stage):
                    return _GAVE_UP
                delay = backoff.next()
                log.debug("update failed (%s); retrying in %.2fs", exc, delay)
                if bounded and (stage.reporting_since is not None or self._bound.bounded):
                    self._unreachable(stage)
                    await sleep_unless(delay, lambda: self._giving_up(stage))
                else:
                    await asyncio.sleep(delay)
                continue
            self._session.authenticated()
            return result
        return None


class _StageOutput:
    """A stage's output callback: each line goes to the shipper, which masks a chunk at a time.

    The pieces of an over-long line (see `agent.executors.base.OutputCallback`) are masked here,
    across their cuts, before they join the lines: a chunk holds whole lines only. Lines of stage
    output are neutralized (`agent.contract.logmarks`); BuildIt's own lines (`command`, `note`,
    `end`) are the only ones that carry a marker.
    """

    __slots__ = ("_add", "_lease_id", "piece")

    def __init__(self, shipper: LogShipper, lease_id: str, masker: Masker) -> None:
        self._add = shipper.add
        self._lease_id = lease_id
        self.piece = PieceMasker(masker, self).piece

    def __call__(self, line: str) -> None:
        if line.startswith(logmarks.PREFIX):
            line = logmarks.neutralize(line)
        self._add(self._lease_id, line)

    def command(self, index: int, total: int, command: str) -> None:
        """Command `index` of `total` starts: its header (first line), then its further lines."""
        first, *more = command.split("\n")
        self._add(self._lease_id, logmarks.line(logmarks.CMD, index, total, text=f"$ {first}"))
        for rest in more:
            self._add(self._lease_id, logmarks.line(logmarks.MORE, index, total, text=f"> {rest}"))

    def note(self, text: str) -> None:
        """A line of BuildIt's own (fetching sources, artifacts, problems), one per line of `text`."""
        for part in text.split("\n"):
            self._add(self._lease_id, logmarks.line(logmarks.NOTE, text=part))

    def end(self, result: ExecutionResult, total: int, message: str) -> None:
        """The log's closing line: how the stage ended, and in which command."""
        status = result.status.value
        word = status.replace("_", " ")
        if result.ok:
            text = f"stage succeeded ({total} command{'' if total == 1 else 's'})"
        elif result.status is StageStatus.FAILED and message.startswith("command "):
            text = message
        elif message.startswith(word):
            text = f"stage {message}"
        else:
            text = f"stage {word}: {message}" if message else f"stage {word}"
        flat = "buildit: " + " ".join(text.split())
        self._add(self._lease_id, logmarks.line(logmarks.END, status, result.command, total, text=flat))


def _now() -> datetime:
    return datetime.now(UTC)


def _workspace_name(lease_id: str) -> str:
    """A directory name for a lease: the id itself when it is a safe name, else a hash of it."""
    if _SAFE_NAME.fullmatch(lease_id) and lease_id not in (".", ".."):
        return lease_id
    return hashlib.sha256(lease_id.encode()).hexdigest()[:32]


def _fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
