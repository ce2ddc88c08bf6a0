"""Commit statuses: each run of a watched repository is reported to its forge as it progresses.

Optional per repository (`commit_status` at registration). The reporter follows run events on the
event bus, so the scheduler never waits for a forge: each report is an HTTP call in a worker
thread, in order per run, and a failure is logged (without the token) and does not affect the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from controller.events import Event, EventBus, Overflow
from controller.forge.status import StatusReportError, StatusTarget, report_status
from controller.repos.services import RepoRow
from controller.runs.services import find_run
from controller.scheduling.model import RunState
from controller.triggers.trigger_engine import TriggerEngine

log = logging.getLogger(__name__)


class StatusReporter:
    """See the module docstring. `start()` subscribes; `stop()` ends the subscription."""

    def __init__(self, engine: TriggerEngine, events: EventBus, public_url: str) -> None:
        self.engine = engine
        self.events = events
        self.public_url = public_url.rstrip("/")
        #: Runs of repositories that report, with their commit (filled as the engine makes runs).
        self._runs: dict[UUID, tuple[RepoRow, str]] = {}
        self._reported: dict[UUID, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[tuple[RepoRow, str, RunState, str]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        engine.run_listeners.append(self._run_made)

    def _run_made(self, repo: RepoRow, run: RunState, sha: str) -> None:
        if repo.status_kind and repo.status_token:
            self._runs[run.id] = (repo, sha)
            self._enqueue(run)

    async def start(self) -> None:
        """Follow run events."""
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._follow(ready), name="commit-status")
        self._sender = asyncio.create_task(self._send(), name="commit-status-sender")
        await ready.wait()

    async def stop(self) -> None:
        """Stop following (reports still queued are dropped; the forge keeps the last one sent)."""
        for task in (self._task, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _follow(self, ready: asyncio.Event) -> None:
        async with self.events.subscribe(kinds=frozenset({"run"})) as queue:
            ready.set()
            while True:
                event = await queue.get()
                if isinstance(event, Overflow) or not isinstance(event, Event) or event.kind != "run":
                    continue
                run = event.subject
                if run.id not in self._runs:
                    await self._adopt(run)  # e.g. a run made before a controller restart
                if run.id in self._runs:
                    self._enqueue(run)

    async def _adopt(self, run: RunState) -> None:
        repo = next(
            (
                r
                for r in self.engine.repositories()
                if r.pipeline_id == run.pipeline_id and r.status_kind and r.status_token
            ),
            None,
        )
        if repo is None:
            return
        row = await find_run(run.pipeline_id, run.number)
        if row is not None and row["sha"]:
            self._runs[run.id] = (repo, str(row["sha"]))

    def _enqueue(self, run: RunState) -> None:
        status = run.status.value
        if self._reported.get(run.id) == status:
            return
        self._reported[run.id] = status
        repo, sha = self._runs[run.id]
        self._queue.put_nowait((repo, sha, run, status))
        if run.status.finished:
            self._runs.pop(run.id, None)
            self._reported.pop(run.id, None)

    async def _send(self) -> None:
        while True:
            repo, sha, run, status = await self._queue.get()
            target = StatusTarget(repo.status_kind, repo.status_api_url, repo.status_repo, repo.status_token)
            url = f"{self.public_url}/api/v1/pipelines/{run.pipeline_id}/runs/{run.number}"
            try:
                await asyncio.to_thread(
                    report_status,
                    target,
                    sha,
                    status,
                    target_url=url,
                    description=f"run {run.number}: {status}",
                )
            except StatusReportError as exc:
                log.warning("commit status for %s@%s not reported: %s", repo.name, sha[:12], exc)
            except Exception:
                log.exception("commit status for %s@%s not reported", repo.name, sha[:12])
