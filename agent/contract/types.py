"""Plain data shared by the controller and the agent.

These dataclasses are what both sides agree on, independent of the wire format: the
controller's planner produces `StageSpec`, executors consume it, and `convert.py` maps
them to and from `buildit.proto`. Only the standard library is imported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


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
    secrets: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    timeout_s: float = 3600.0
    retries: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    source: WorkspaceSource | None = None

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

    @property
    def ok(self) -> bool:
        """True when the stage succeeded."""
        return self.status is StageStatus.SUCCEEDED
