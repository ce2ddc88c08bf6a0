"""The scheduler's port to persistence: the `Store` protocol and the records it exchanges.

Two implementations: `db_store.PiccoloStore` (SQLite and PostgreSQL through Piccolo, the product)
and `memory_store.MemoryStore` (in process, for fast tests of the state machine). The scheduler
calls a Store only inside its operations (under its lock, inside `Store.transaction()`).

`SecretSource` is where the values of a pipeline's secrets come from: names when a run is planned,
values only when a stage that uses them is leased (`controller.secrets.services.StoredSecrets` in
the product, `memory_store.MemorySecrets` in tests, `NoSecrets` when none are configured).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from agent.contract.types import StageStatus, WorkspaceSource
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState


@dataclass(frozen=True)
class NewRun:
    """What the store needs to insert a run and its stages."""

    run: RunState
    pipeline_id: UUID
    branch: str
    sha: str
    message: str
    author: str
    trigger: str
    error: str = ""
    source: str = ""
    workspace: WorkspaceSource | None = None
    #: Variables the trigger passed (`${env.NAME}`), kept so a re-run gets them again.
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOrigin:
    """What a stored run was made from: all a re-run needs to build the same thing again."""

    id: UUID
    pipeline_id: UUID
    number: int
    status: StageStatus
    branch: str
    sha: str
    message: str
    author: str
    source: str  # the pipeline file it was planned from ("" for runs stored before it was kept)
    workspace: WorkspaceSource | None
    env: Mapping[str, str] = field(default_factory=dict)


class Store(Protocol):
    """Persistence used by the scheduler: everything it was told survives a controller restart."""

    async def next_run_number(self, pipeline_id: UUID) -> int | None:
        """Take the next run number of a pipeline (None: no such pipeline)."""
        ...

    async def pipeline_config(self, pipeline_id: UUID) -> tuple[str, str] | None:
        """A pipeline's (name, pipeline file), what a trigger without a source plans from."""
        ...

    async def pipeline_owner(self, pipeline_id: UUID) -> tuple[UUID, UUID] | None:
        """A pipeline's (org, tenant): its runs' stages go only to agents serving them (None: any)."""
        ...

    def forget_pipeline(self, pipeline_id: UUID) -> None:
        """A pipeline's file changed or the pipeline is deleted: drop what is cached of it."""
        ...

    async def insert_run(self, new: NewRun) -> None:
        """Store a new run and all its stages (one commit, so no reader sees half a run)."""
        ...

    async def save_stage(self, stage: StageState) -> None:
        """Store a stage's mutable fields (status, lease, counters, log index)."""
        ...

    async def save_run(self, run: RunState) -> None:
        """Store a run's mutable fields (status, cancel flag, start and end)."""
        ...

    async def load_active_runs(self) -> list[RunState]:
        """Every unfinished run with its stages, oldest first (what a starting scheduler resumes)."""
        ...

    async def load_run(self, run_id: UUID) -> RunState | None:
        """One run and its stages whatever its status (a finished run an operator retries)."""
        ...

    async def run_origin(self, run_id: UUID) -> RunOrigin | None:
        """What a stored run was made from (for a re-run)."""
        ...

    async def load_agents(self) -> list[AgentConn]:
        """Every registered agent, with the drain flags that outlive restarts."""
        ...

    async def save_agent_status(self, agent: AgentConn) -> None:
        """Store an agent's status (online, draining, offline), drain flags and last contact."""
        ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[object]:
        """One transaction: the writes of one scheduler operation commit together."""
        ...


class SecretSource(Protocol):
    """The secrets of a pipeline (its tenant's, narrowed by its repository and itself)."""

    async def available(self, pipeline_id: UUID, names: Collection[str]) -> frozenset[str]:
        """Which of `names` are set for the pipeline (asked when a run is planned)."""
        ...

    async def reveal(self, pipeline_id: UUID, names: Collection[str]) -> Mapping[str, str]:
        """The values of those of `names` that are set (asked when a stage is leased, and only then).

        A value that exists but cannot be read raises a `controller.errors.BuildItError` whose
        message says which secret and what to do; the stage then ends in `error` with it.
        """
        ...


class NoSecrets:
    """A `SecretSource` with no secrets: every `${secrets.NAME}` is reported as not set."""

    async def available(self, pipeline_id: UUID, names: Collection[str]) -> frozenset[str]:
        return frozenset()

    async def reveal(self, pipeline_id: UUID, names: Collection[str]) -> Mapping[str, str]:
        return {}
