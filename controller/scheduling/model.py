"""In-memory state of active runs, mirrored to the database by the scheduler.

The database is the source of truth across restarts; these objects are the working copy the
scheduler mutates under its lock, so the hot paths (lease, log, heartbeat) need no reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from agent.contract.types import StageSpec, StageStatus
from controller.definition.model import DEFAULT_QUEUE_TIMEOUT_S
from controller.definition.secret_refs import Template

DEFAULT_INFRA_RETRIES = 2


def now() -> datetime:
    """Timezone-aware UTC now (what the database stores); the scheduler's default clock."""
    return datetime.now(UTC)


@dataclass(eq=False)
class StageState:
    """One stage of an active run. Compared by identity: the queue finds and removes stages by it."""

    id: UUID
    run_id: UUID
    name: str
    index: int
    status: StageStatus
    spec: StageSpec
    needs: tuple[str, ...]
    executor: str
    labels: dict[str, str]
    attempt: int = 1
    infra_failures: int = 0
    user_retries_used: int = 0
    agent_id: UUID | None = None
    lease_id: str | None = None
    lease_deadline: datetime | None = None
    timeout_deadline: datetime | None = None
    cancel_deadline: datetime | None = None
    exit_code: int | None = None
    message: str = ""
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_seq: int = 0
    log_size: int = 0
    log_verified: bool = False
    #: Whose stage this is: only agents serving this org (and tenant) take it (None: any agent).
    org: UUID | None = None
    tenant: UUID | None = None
    #: The stage's secrets as templates (names, no values; `spec.secrets` is empty): the values
    #: are filled in only when the stage is leased (see controller.definition.secret_refs).
    secret_templates: Mapping[str, Template] = field(default_factory=dict)
    #: How long it may wait in the queue for an agent before it ends in `error` (`queue-timeout`).
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S
    #: When the queue timeout ends it (this attempt's; None while not queued).
    queue_deadline: datetime | None = None
    #: Why no agent takes it while it is queued ("" otherwise, or while it has waited only briefly).
    waiting_reason: str = ""

    @property
    def leased(self) -> bool:
        """Held by an agent right now."""
        return self.lease_id is not None


@dataclass(eq=False)
class RunState:
    """An active run and its stages (by name, in file order). Compared by identity."""

    id: UUID
    pipeline_id: UUID
    number: int
    status: StageStatus
    stages: dict[str, StageState] = field(default_factory=dict)
    cancel_requested: bool = False
    when_skipped: frozenset[str] = frozenset()
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime | None = None
    error: str = ""
    org: UUID | None = None
    tenant: UUID | None = None
    #: Why it waits: its waiting stages' reason (see `waiting.run_reason`); "" when none waits.
    waiting_reason: str = ""


def run_status(run: RunState) -> StageStatus:
    """A run's status follows its stages.

    Unfinished: running once any stage started, else queued/pending. Finished: cancelled when a
    cancel was requested and something was cancelled; failed when any stage failed or timed out;
    error when any stage could not run; otherwise succeeded (skips by `when` are fine).
    """
    states = [s.status for s in run.stages.values()]
    if not all(s.finished for s in states):
        if any(s is StageStatus.RUNNING for s in states) or any(
            s.finished and s is not StageStatus.SKIPPED for s in states
        ):
            return StageStatus.RUNNING
        if any(s is StageStatus.QUEUED for s in states):
            return StageStatus.QUEUED
        return StageStatus.PENDING
    if run.cancel_requested and StageStatus.CANCELLED in states:
        return StageStatus.CANCELLED
    if StageStatus.FAILED in states or StageStatus.TIMED_OUT in states:
        return StageStatus.FAILED
    if StageStatus.ERROR in states:
        return StageStatus.ERROR
    if StageStatus.CANCELLED in states:
        return StageStatus.CANCELLED
    return StageStatus.SUCCEEDED
