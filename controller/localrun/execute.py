"""Runs a planned pipeline here: DAG order, parallel up to `jobs`, retries, artifacts, cancel.

Each stage attempt gets a fresh workspace filled from the source, plus the artifacts of the
stages it needs. Output is masked before it reaches the reporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.contract.types import ExecutionResult, StageSpec, StageStatus
from agent.executors.base import Executor, outcome_message, resources_ignored
from agent.logs import Masker
from agent.workspace import ArtifactError, collect_artifacts, restore_artifacts
from controller.definition.dag import Dag
from controller.definition.plan import Plan


@dataclass
class StageOutcome:
    """How a stage ended in this run (after all its attempts)."""

    name: str
    status: StageStatus = StageStatus.PENDING
    exit_code: int | None = None
    message: str = ""
    attempts: int = 0
    duration_s: float = 0.0
    artifacts: tuple[str, ...] = ()


class Reporter(Protocol):
    """Where progress goes (the terminal, or a test's recorder)."""

    def stage_started(self, name: str, attempt: int) -> None: ...

    def line(self, name: str, text: str) -> None: ...

    def stage_finished(self, outcome: StageOutcome) -> None: ...

    def note(self, name: str, text: str) -> None: ...


FillWorkspace = Callable[[Path], None]
ExecutorFor = Callable[[StageSpec], Executor]


class LocalRun:
    """One pipeline run on this machine."""

    def __init__(
        self,
        plan: Plan,
        executor_for: ExecutorFor,
        fill_workspace: FillWorkspace,
        run_dir: Path,
        reporter: Reporter,
        jobs: int = 4,
    ) -> None:
        self.plan = plan
        self.specs = {spec.name: spec for spec in plan.specs}
        self.dag = Dag(plan.needs)
        self.executor_for = executor_for
        self.fill_workspace = fill_workspace
        self.run_dir = run_dir
        self.reporter = reporter
        self.jobs = max(1, jobs)
        self.mask = Masker(v for spec in plan.specs for v in spec.secrets.values())
        self.outcomes = {name: StageOutcome(name) for name in self.specs}

    async def run(self, cancel: asyncio.Event) -> dict[str, StageOutcome]:
        """Run every stage that can run; returns each stage's outcome, in declaration order."""
        status = {name: StageStatus.PENDING for name in self.specs}
        for name in self.plan.skipped:
            status[name] = StageStatus.SKIPPED
            self._finish(name, StageStatus.SKIPPED, "skipped: its 'when' condition does not match")
        self._skip_blocked(status)
        running: dict[asyncio.Task[StageOutcome], str] = {}
        cancel_wait = asyncio.ensure_future(cancel.wait())
        try:
            while True:
                if not cancel.is_set():
                    for name in self.dag.ready(status):
                        if len(running) >= self.jobs:
                            break
                        status[name] = StageStatus.RUNNING
                        task = asyncio.create_task(self._run_stage(self.specs[name], cancel))
                        running[task] = name
                if not running:
                    break
                waiters: set[asyncio.Future[Any]] = {*running, cancel_wait}
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in running if t in done]:
                    name = running.pop(task)
                    outcome = task.result()
                    status[name] = outcome.status
                    self.reporter.stage_finished(outcome)
                if not cancel.is_set():
                    self._skip_blocked(status)
                # Once cancelled, executors (watching the same event) stop and clean up; the loop
                # only waits for them, and stages never started end as cancelled below.
        finally:
            cancel_wait.cancel()
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for name, value in status.items():
            if value is StageStatus.PENDING:
                self._finish(name, StageStatus.CANCELLED, "not started: the run was cancelled")
        return self.outcomes

    def _finish(self, name: str, state: StageStatus, message: str) -> None:
        outcome = self.outcomes[name]
        outcome.status = state
        outcome.message = message
        self.reporter.stage_finished(outcome)

    def _skip_blocked(self, status: dict[str, StageStatus]) -> None:
        for name in self.dag.propagate(status):
            failed = [d for d in self.dag.needs[name] if status[d] is not StageStatus.SUCCEEDED]
            self._finish(
                name, StageStatus.SKIPPED, f"skipped: needs {', '.join(failed)}, which did not succeed"
            )

    async def _run_stage(self, spec: StageSpec, cancel: asyncio.Event) -> StageOutcome:
        outcome = self.outcomes[spec.name]
        started = time.monotonic()
        result = ExecutionResult(StageStatus.ERROR, message="not run")
        try:
            for attempt in range(1, spec.retries + 2):
                outcome.attempts = attempt
                self.reporter.stage_started(spec.name, attempt)
                result = await self._attempt(spec, cancel)
                retryable = result.status in (StageStatus.FAILED, StageStatus.TIMED_OUT)
                if result.ok or not retryable or cancel.is_set() or attempt > spec.retries:
                    break
                reason = self.mask(outcome_message(result, spec.commands, self.mask)) or result.status
                self.reporter.note(
                    spec.name, f"{reason}; retrying (attempt {attempt + 1} of {spec.retries + 1})"
                )
            if result.ok and spec.artifacts:
                result = self._collect(spec, outcome)
        except Exception as exc:  # an executor bug must not take the whole run down silently
            result = ExecutionResult(
                StageStatus.ERROR, message=f"internal error: {exc.__class__.__name__}: {exc}"
            )
        outcome.status = result.status
        outcome.exit_code = result.exit_code
        outcome.message = self.mask(outcome_message(result, spec.commands, self.mask))
        outcome.duration_s = time.monotonic() - started
        return outcome

    def _workspace(self, name: str) -> Path:
        return self.run_dir / "workspaces" / name

    def _artifact_store(self, name: str) -> Path:
        return self.run_dir / "artifacts" / name

    async def _attempt(self, spec: StageSpec, cancel: asyncio.Event) -> ExecutionResult:
        workspace = self._workspace(spec.name)
        if workspace.exists():
            shutil.rmtree(workspace)
        workspace.mkdir(parents=True)
        self.fill_workspace(workspace)
        for need in spec.needs:
            try:
                restore_artifacts(self._artifact_store(need), workspace)
            except ArtifactError as exc:
                return ExecutionResult(StageStatus.ERROR, message=str(exc))
        executor = self.executor_for(spec)
        if spec.resources and not executor.applies_resources:
            self.reporter.note(spec.name, resources_ignored(executor.name, spec.resources))
        sink = self.mask.wrap(lambda text: self.reporter.line(spec.name, text))
        return await executor.run(spec, workspace, sink, cancel)

    def _collect(self, spec: StageSpec, outcome: StageOutcome) -> ExecutionResult:
        try:
            copied, empty = collect_artifacts(
                self._workspace(spec.name), spec.artifacts, self._artifact_store(spec.name)
            )
        except (ArtifactError, OSError) as exc:
            return ExecutionResult(StageStatus.ERROR, message=f"artifacts: {exc}")
        for pattern in empty:
            self.reporter.note(spec.name, f"warning: artifact pattern '{pattern}' matched no files")
        outcome.artifacts = tuple(copied)
        if copied:
            self.reporter.note(spec.name, f"saved {len(copied)} artifact file(s)")
        return ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)
