"""Plain data shared by the controller and the agent.

These dataclasses are what both sides agree on, independent of the wire format: the
controller's planner produces `StageSpec`, executors consume it, and `convert.py` maps
them to and from `buildit.proto`. Only the standard library (and `quantities`) is imported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from agent.contract.quantities import format_cpu, format_memory


class StageStatus(enum.StrEnum):
    """Lifecycle of one stage (and, aggregated, of a run)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        """True once the stage can no longer change (a terminal state)."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        StageStatus.SUCCEEDED,
        StageStatus.FAILED,
        StageStatus.CANCELLED,
        StageStatus.SKIPPED,
        StageStatus.TIMED_OUT,
        StageStatus.ERROR,
    }
)


@dataclass(frozen=True)
class WorkspaceSource:
    """Where a stage's workspace comes from: a repository at one exact commit."""

    repo_url: str
    commit_sha: str
    ref: str = ""


@dataclass(frozen=True)
class Resources:
    """What a stage may use (its `resources` node): CPU in millicores, memory in bytes, and
    processes; 0 leaves one unset (the agent's default applies, or no limit)."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    pids: int = 0

    def __bool__(self) -> bool:
        return bool(self.cpu_millis or self.memory_bytes or self.pids)

    def over(self, defaults: Resources) -> Resources:
        """These, with each unset one taken from `defaults` (an agent's `--stage-*` settings)."""
        return Resources(
            self.cpu_millis or defaults.cpu_millis,
            self.memory_bytes or defaults.memory_bytes,
            self.pids or defaults.pids,
        )

    def describe(self) -> str:
        """As the pipeline file writes them: `cpu=2, memory=4Gi, pids=512` (the set ones)."""
        parts = []
        if self.cpu_millis:
            parts.append(f"cpu={format_cpu(self.cpu_millis)}")
        if self.memory_bytes:
            parts.append(f"memory={format_memory(self.memory_bytes)}")
        if self.pids:
            parts.append(f"pids={self.pids}")
        return ", ".join(parts)


@dataclass(frozen=True)
class StageSpec:
    """A compiled stage: everything an executor needs, all variables already resolved.

    `commands` are shell command lines run with `sh -c`, one after the other, stopping at the
    first failure. Variables in them were turned into references to `env` entries, so values
    from outside (commit messages, secrets) are never part of the shell text. `secrets` maps
    env names to secret values: the executor exports them and masks their values in output.
    """

    name: str
    index: int
    commands: tuple[str, ...]
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Never in a repr (a logged lease or spec must not show a value).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    needs: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    timeout_s: float = 3600.0
    retries: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    source: WorkspaceSource | None = None
    resources: Resources = field(default_factory=Resources)

    @property
    def executor_kind(self) -> str:
        """Which kind of executor a stage asks for: containers when it names an image."""
        return "docker" if self.image else "local"


@dataclass(frozen=True)
class ExecutionResult:
    """How one execution of a stage ended, as reported by an executor."""

    status: StageStatus
    exit_code: int | None = None
    message: str = ""
    #: The 1-based command of the stage it ended in (failed, timed out, was cancelled); 0: none.
    #: Agent-side only (the controller gets the message naming it), so it is not on the wire.
    command: int = 0
    #: Killed by the kernel at its memory limit (`message` says which limit); agent-side only.
    oom_killed: bool = False
    #: The infrastructure ended it (a Kubernetes eviction, an unschedulable pod), not the stage: it
    #: should run again elsewhere without spending the stage's retries. Agent-side only, and not yet
    #: acted on: the agent reports such a result as ERROR, which spends a retry (see README, Kubernetes).
    infrastructure: bool = False

    @property
    def ok(self) -> bool:
        """True when the stage succeeded."""
        return self.status is StageStatus.SUCCEEDED


# --- AgentService messages ------------------------------------------------------------------------------
#
# The agent runtime and the controller's AgentService talk in these dataclasses; `convert.py` maps them
# to and from the wire messages of the same names in buildit.proto (see there for the full semantics).


@dataclass(frozen=True, slots=True)
class LogLine:
    """Stage output: one or more lines joined by "\n" (no trailing newline), secrets already masked.

    A stage's log is one combined byte stream, so a line has no stream or time of its own; the
    controller appends `text + "\n"` to the stage's log.
    """

    text: str


@dataclass(frozen=True)
class LogChunk:
    """A batch of log lines of one lease; `seq` is 1-based and consecutive per lease."""

    lease_id: str
    seq: int
    lines: tuple[LogLine, ...]


@dataclass(frozen=True)
class LogAck:
    """The controller stored every chunk of `lease_id` up to `acked_seq` (or the lease is gone)."""

    lease_id: str
    acked_seq: int
    lease_lost: bool = False


@dataclass(frozen=True)
class RegisterRequest:
    """An agent asking to join the fleet, authenticated by the controller's enrolment secret."""

    registration_token: str
    name: str
    labels: dict[str, str]
    executors: tuple[str, ...]
    capacity: int
    version: str


@dataclass(frozen=True)
class RegisterResponse:
    """The agent's identity and long-lived token (sent as `authorization: Bearer <token>`)."""

    agent_id: str
    agent_token: str
    controller_version: str = ""
    #: 0 means the controller left it to the agent's default.
    heartbeat_interval_ms: int = 0


@dataclass(frozen=True)
class LeaseRequest:
    """Opens the lease stream: the agent's free slots and the leases it still runs."""

    agent_id: str
    free_slots: int
    running_lease_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageLease:
    """A stage leased to an agent; `lease_id` is the fencing token for every write about it."""

    lease_id: str
    run_id: str
    stage_run_id: str
    attempt: int
    deadline: datetime | None
    spec: StageSpec


class CancelReason(enum.StrEnum):
    """Why a stage must stop, which decides what the agent reports."""

    #: A user or integration cancelled it: report CANCELLED.
    USER = "user"
    #: It exceeded its timeout: report TIMED_OUT.
    TIMEOUT = "timeout"
    #: The lease is no longer this agent's: stop, report nothing, drop buffered logs.
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class CancelStage:
    """Stop the stage held under `lease_id` within a second."""

    lease_id: str
    reason: CancelReason
    message: str = ""


@dataclass(frozen=True)
class Ping:
    """Keep-alive on an idle lease stream."""

    sent_at: datetime | None = None


@dataclass(frozen=True)
class Drain:
    """Take no new leases."""

    reason: str = ""


LeaseEvent = StageLease | CancelStage | Ping | Drain
"""One message of the lease stream."""


@dataclass(frozen=True)
class ExtendLeaseResponse:
    """A lease's new deadline, and whether the controller wants the stage stopped."""

    deadline: datetime | None
    cancel_requested: bool = False
    cancel_reason: CancelReason | None = None


@dataclass(frozen=True)
class HeartbeatRequest:
    """Agent-level liveness; extends every listed lease."""

    agent_id: str
    running_lease_ids: tuple[str, ...]
    free_slots: int
    draining: bool = False


@dataclass(frozen=True)
class HeartbeatResponse:
    """Leases the controller no longer honours, and whether the agent is being drained.

    `operator_drain`: an operator drained it; no leases come until resumed, but the agent stays up.
    """

    lost_lease_ids: tuple[str, ...] = ()
    draining: bool = False
    operator_drain: bool = False


@dataclass(frozen=True)
class StageUpdate:
    """A status report for the stage held under `lease_id` (RUNNING, then one terminal status)."""

    lease_id: str
    status: StageStatus
    exit_code: int | None = None
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class ArtifactHeader:
    """Starts one file of an UploadArtifact / DownloadArtifacts stream; its data chunks follow.

    `path` is relative to the workspace root, '/'-separated; `sha256` is the lowercase hex digest of
    the whole content; `stage` names the producing stage (downloads only).
    """

    lease_id: str
    path: str
    size: int
    sha256: str = ""
    stage: str = ""


ArtifactPart = ArtifactHeader | bytes
"""One message of an artifact stream: a header, or a chunk of the current file's content."""


@dataclass(frozen=True)
class ArtifactAck:
    """The controller stored an uploaded artifact under `sha256` (already held: `deduplicated`)."""

    sha256: str
    size: int
    deduplicated: bool = False
