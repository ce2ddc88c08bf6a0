"""MemoryStore: the scheduler's `Store` held in this process, for fast tests of the state machine.

A real implementation of `ports.Store`, not a stand-in that records calls: it keeps copies of what
it is given (so a change the scheduler makes in memory is stored only when it writes it, as with
a database), answers the reads a starting scheduler makes, and a transaction that ends with an
exception rolls its writes back. What it keeps mirrors the Piccolo store column for column
(`cancel_deadline` and `log_verified` are not stored there either). Nothing outlives the process.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from agent.contract.types import StageStatus
from controller.errors import Unavailable
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState, now
from controller.scheduling.planning import CANCEL_GRACE_S, WHEN_SKIPPED
from controller.scheduling.ports import NewRun, RunOrigin

_K = TypeVar("_K")
_V = TypeVar("_V")


def _stage_copy(stage: StageState) -> StageState:
    return replace(stage, labels=dict(stage.labels), cancel_deadline=None, log_verified=False)


def _run_copy(run: RunState) -> RunState:
    return replace(run, stages={})


class MemoryStore:
    """Implements `controller.scheduling.ports.Store` in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.pipelines: dict[UUID, tuple[str, str]] = {}
        #: (org, tenant) of pipelines added with an owner; None for the rest (any agent takes them).
        self.owners: dict[UUID, tuple[UUID, UUID]] = {}
        #: Agent id -> status as the agents page shows it ("online", "draining", "offline").
        self.agent_status: dict[UUID, str] = {}
        self._numbers: dict[UUID, int] = {}
        self._runs: dict[UUID, RunState] = {}
        self._origins: dict[UUID, NewRun] = {}
        self._stages: dict[UUID, StageState] = {}
        self._agents: dict[UUID, AgentConn] = {}
        self._undo: list[Callable[[], None]] | None = None
        self._depth = 0

    # ------------------------------------------------------------------ what other services write

    def add_pipeline(
        self, source: str, name: str = "pipeline", owner: tuple[UUID, UUID] | None = None
    ) -> UUID:
        """Store a pipeline (the pipelines service's job in the product) of `owner` (org, tenant)."""
        pipeline_id = uuid.uuid4()
        self.pipelines[pipeline_id] = (name, source)
        if owner is not None:
            self.owners[pipeline_id] = owner
        self._numbers[pipeline_id] = 0
        return pipeline_id

    def add_agent(self, agent: AgentConn) -> None:
        """Store a registered agent (the agents service's job in the product)."""
        self._agents[agent.id] = replace(agent, running=set(), events=None)
        self.agent_status[agent.id] = "offline"

    # ------------------------------------------------------------------ reads for tests

    def stored_stage(self, stage_id: UUID) -> StageState:
        """A copy of a stage as last written."""
        return _stage_copy(self._stages[stage_id])

    def stored_run(self, run_id: UUID) -> RunState:
        """A copy of a run as last written, with its stages."""
        return self._with_stages(self._runs[run_id])

    def stored_agent(self, agent_id: UUID) -> AgentConn:
        """A copy of an agent's stored record."""
        return replace(self._agents[agent_id], running=set())

    def run_ids(self) -> list[UUID]:
        """Every stored run, in the order they were inserted."""
        return list(self._runs)

    # ------------------------------------------------------------------ Store

    def transaction(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Writes inside commit together: an exception rolls every one of them back."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[object]:
        outer = self._depth == 0
        if outer:
            self._undo = []
        self._depth += 1
        try:
            yield self
        except BaseException:
            if outer and self._undo is not None:
                for undo in reversed(self._undo):
                    undo()
            raise
        finally:
            self._depth -= 1
            if outer:
                self._undo = None

    def _put(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        if self._undo is not None:
            if key in table:
                old = table[key]
                self._undo.append(lambda: table.__setitem__(key, old))
            else:
                self._undo.append(lambda: table.pop(key, None))  # type: ignore[arg-type]
        table[key] = value

    async def next_run_number(self, pipeline_id: UUID) -> int | None:
        """See `Store.next_run_number`."""
        if pipeline_id not in self._numbers:
            return None
        number = self._numbers[pipeline_id] + 1
        self._put(self._numbers, pipeline_id, number)
        return number

    async def pipeline_config(self, pipeline_id: UUID) -> tuple[str, str] | None:
        """See `Store.pipeline_config`."""
        return self.pipelines.get(pipeline_id)

    async def pipeline_owner(self, pipeline_id: UUID) -> tuple[UUID, UUID] | None:
        """See `Store.pipeline_owner`."""
        return self.owners.get(pipeline_id)

    def forget_pipeline(self, pipeline_id: UUID) -> None:
        """See `Store.forget_pipeline`: nothing is cached here (`pipelines` is the data itself)."""

    async def insert_run(self, new: NewRun) -> None:
        """See `Store.insert_run`."""
        async with self.transaction():
            self._put(self._runs, new.run.id, _run_copy(new.run))
            self._put(self._origins, new.run.id, replace(new, env=dict(new.env)))
            for stage in new.run.stages.values():
                self._put(self._stages, stage.id, _stage_copy(stage))

    async def save_stage(self, stage: StageState) -> None:
        """See `Store.save_stage` (an unknown stage changes nothing, as an UPDATE would)."""
        if stage.id in self._stages:
            self._put(self._stages, stage.id, _stage_copy(stage))

    async def save_run(self, run: RunState) -> None:
        """See `Store.save_run` (an unknown run changes nothing, as an UPDATE would)."""
        stored = self._runs.get(run.id)
        if stored is not None:
            changes = {
                "status": run.status,
                "cancel_requested": run.cancel_requested,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "waiting_reason": run.waiting_reason,
            }
            self._put(self._runs, run.id, replace(stored, **changes))  # type: ignore[arg-type]

    async def load_active_runs(self) -> list[RunState]:
        """See `Store.load_active_runs`."""
        active = [run for run in self._runs.values() if not run.status.finished]
        active.sort(key=lambda run: run.created_at or now())
        return [self._with_stages(run) for run in active]

    async def load_run(self, run_id: UUID) -> RunState | None:
        """See `Store.load_run`."""
        run = self._runs.get(run_id)
        return self._with_stages(run) if run is not None else None

    async def run_origin(self, run_id: UUID) -> RunOrigin | None:
        """See `Store.run_origin`."""
        run, new = self._runs.get(run_id), self._origins.get(run_id)
        if run is None or new is None:
            return None
        return RunOrigin(
            id=run.id,
            pipeline_id=new.pipeline_id,
            number=run.number,
            status=run.status,
            branch=new.branch,
            sha=new.sha,
            message=new.message,
            author=new.author,
            source=new.source,
            workspace=new.workspace,
            env=dict(new.env),
        )

    async def load_agents(self) -> list[AgentConn]:
        """See `Store.load_agents`."""
        return [replace(agent, running=set(), events=None) for agent in self._agents.values()]

    async def save_agent_status(self, agent: AgentConn) -> None:
        """See `Store.save_agent_status`."""
        stored = self._agents.get(agent.id)
        if stored is None:
            return
        status = "offline" if not agent.online else ("draining" if agent.draining else "online")
        self._put(self.agent_status, agent.id, status)
        updated = replace(
            stored,
            agent_draining=agent.agent_draining,
            operator_draining=agent.operator_draining,
            last_seen=agent.last_seen,
        )
        self._put(self._agents, agent.id, updated)

    def _with_stages(self, stored: RunState) -> RunState:
        run = _run_copy(stored)
        stages = sorted((s for s in self._stages.values() if s.run_id == run.id), key=lambda s: s.index)
        for stored_stage in stages:
            stage = _stage_copy(stored_stage)
            if run.cancel_requested and stage.lease_id is not None:
                stage.cancel_deadline = now() + timedelta(seconds=CANCEL_GRACE_S)
            run.stages[stage.name] = stage
        run.when_skipped = frozenset(
            name
            for name, s in run.stages.items()
            if s.status is StageStatus.SKIPPED and s.message == WHEN_SKIPPED
        )
        return run


class MemorySecrets:
    """Implements `controller.scheduling.ports.SecretSource` in memory, for the scheduler's tests.

    Tenant-wide values, and values narrowed to one pipeline (which win, as in the product). A
    name in `unreadable` is set but cannot be read, as a value that no longer decrypts.
    """

    def __init__(self) -> None:
        self.tenant_wide: dict[str, str] = {}
        self.by_pipeline: dict[UUID, dict[str, str]] = {}
        self.unreadable: set[str] = set()
        #: How many times values were asked for (each is one stage being leased).
        self.reveals = 0

    def set(self, name: str, value: str, pipeline: UUID | None = None) -> None:
        """Set a secret, tenant-wide or for one pipeline."""
        target = self.tenant_wide if pipeline is None else self.by_pipeline.setdefault(pipeline, {})
        target[name] = value

    def delete(self, name: str, pipeline: UUID | None = None) -> None:
        """Delete a secret, tenant-wide or of one pipeline."""
        target = self.tenant_wide if pipeline is None else self.by_pipeline.get(pipeline, {})
        target.pop(name, None)

    def _visible(self, pipeline_id: UUID) -> dict[str, str]:
        return {**self.tenant_wide, **self.by_pipeline.get(pipeline_id, {})}

    async def available(self, pipeline_id: UUID, names: Collection[str]) -> frozenset[str]:
        """See `SecretSource.available`."""
        visible = self._visible(pipeline_id)
        return frozenset(name for name in names if name in visible)

    async def reveal(self, pipeline_id: UUID, names: Collection[str]) -> Mapping[str, str]:
        """See `SecretSource.reveal`."""
        self.reveals += 1
        for name in sorted(set(names) & self.unreadable):
            raise Unavailable(f"secret '{name}' cannot be decrypted with the controller's master key")
        visible = self._visible(pipeline_id)
        return {name: visible[name] for name in names if name in visible}
