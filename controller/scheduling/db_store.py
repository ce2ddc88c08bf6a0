"""The scheduler's persistence, on the Piccolo tables of the runs, pipelines and agents domains."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from agent.contract.types import Resources, StageSpec, StageStatus, WorkspaceSource
from controller.agents.tables import Agent
from controller.db.binding import write_transaction
from controller.db.columns import Statement, insert_row, loaded, update_by_id
from controller.definition import secret_refs
from controller.definition.model import DEFAULT_QUEUE_TIMEOUT_S
from controller.definition.secret_refs import Template, Templates
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run, StageRun
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState
from controller.scheduling.planning import CANCEL_GRACE_S, WHEN_SKIPPED
from controller.scheduling.ports import NewRun, RunOrigin

ACTIVE = [s.value for s in StageStatus if not s.finished]


def spec_toloaded(
    spec: StageSpec, templates: Templates | None = None, queue_timeout_s: float | None = None
) -> dict[str, Any]:
    """A stage spec as stored: secret values are never written to the database, only the
    templates that name the secrets a lease fills in (`secret_templates`). The stage's queue
    timeout is the controller's business, not the agent's: it is kept beside the spec."""
    data = asdict(spec)
    data["secrets"] = {}
    if templates:
        data["secret_templates"] = secret_refs.to_json(templates)
    if queue_timeout_s is not None:
        data["queue_timeout_s"] = queue_timeout_s
    return data


def queue_timeout_fromloaded(data: dict[str, Any] | str) -> float:
    """The queue timeout stored with a spec (the default for stages stored before it was kept)."""
    if isinstance(data, str):
        data = json.loads(data)
    value = data.get("queue_timeout_s") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) else DEFAULT_QUEUE_TIMEOUT_S


def templates_fromloaded(data: dict[str, Any] | str) -> dict[str, Template]:
    """The secret templates stored with a spec (none for a stage that uses no secrets)."""
    if isinstance(data, str):
        data = json.loads(data)
    return secret_refs.from_json(data.get("secret_templates")) if isinstance(data, dict) else {}


def spec_fromloaded(data: dict[str, Any] | str) -> StageSpec:
    """The inverse of `spec_to_json`."""
    if isinstance(data, str):
        data = json.loads(data)
    assert isinstance(data, dict)
    source = data.get("source")
    return StageSpec(
        name=data["name"],
        index=data["index"],
        commands=tuple(data["commands"]),
        image=data.get("image"),
        env=dict(data.get("env", {})),
        secrets={},
        needs=tuple(data.get("needs", ())),
        artifacts=tuple(data.get("artifacts", ())),
        timeout_s=float(data.get("timeout_s", 3600.0)),
        retries=int(data.get("retries", 0)),
        labels=dict(data.get("labels", {})),
        workdir=data.get("workdir", ""),
        source=WorkspaceSource(**source) if source else None,
        resources=Resources(**data.get("resources") or {}),
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# The two statements of every stage transition (see `update_by_id`); the order of the columns is
# the order of `save_stage`'s arguments.
_SAVE_STAGE = update_by_id(
    StageRun,
    [
        StageRun.status,
        StageRun.attempt,
        StageRun.infra_failures,
        StageRun.user_retries_used,
        StageRun.agent,
        StageRun.lease_id,
        StageRun.lease_deadline,
        StageRun.timeout_deadline,
        StageRun.exit_code,
        StageRun.message,
        StageRun.queued_at,
        StageRun.started_at,
        StageRun.finished_at,
        StageRun.log_seq,
        StageRun.log_size,
        StageRun.waiting_reason,
    ],
)
_SAVE_RUN = update_by_id(
    Run, [Run.status, Run.cancel_requested, Run.started_at, Run.finished_at, Run.waiting_reason]
)
# Every column, in the order of `insert_run`'s arguments.
_INSERT_RUN = insert_row(
    Run,
    [
        Run.id,
        Run.org,
        Run.tenant,
        Run.pipeline,
        Run.number,
        Run.status,
        Run.branch,
        Run.sha,
        Run.commit_message,
        Run.author,
        Run.trigger,
        Run.error,
        Run.cancel_requested,
        Run.created_at,
        Run.started_at,
        Run.finished_at,
        Run.pipeline_source,
        Run.workspace,
        Run.env,
        Run.waiting_reason,
    ],
)
_INSERT_STAGE = insert_row(
    StageRun,
    [
        StageRun.id,
        StageRun.org,
        StageRun.tenant,
        StageRun.run,
        StageRun.name,
        StageRun.index,
        StageRun.status,
        StageRun.needs,
        StageRun.spec,
        StageRun.labels,
        StageRun.executor,
        StageRun.attempt,
        StageRun.infra_failures,
        StageRun.user_retries_used,
        StageRun.agent,
        StageRun.lease_id,
        StageRun.lease_deadline,
        StageRun.timeout_deadline,
        StageRun.exit_code,
        StageRun.message,
        StageRun.queued_at,
        StageRun.started_at,
        StageRun.finished_at,
        StageRun.log_seq,
        StageRun.log_size,
        StageRun.waiting_reason,
    ],
)
_NEXT_RUN_NUMBER = Statement(
    Pipeline,
    f'UPDATE "{Pipeline._meta.tablename}" SET "next_run_number" = "next_run_number" + 1 '
    'WHERE "id" = {} RETURNING "next_run_number"',
)

#: Pipeline sources are cached (bounded, oldest dropped); an edit or a delete drops its entry
#: (`forget_pipeline`).
CONFIG_CACHE_SIZE = 1024


class PiccoloStore:
    """Implements `controller.scheduling.ports.Store` on the Piccolo tables."""

    def __init__(self, org: UUID, tenant: UUID) -> None:
        self.org = org
        self.tenant = tenant
        self._configs: dict[UUID, tuple[str, str]] = {}
        self._owners: dict[UUID, tuple[UUID, UUID]] = {}

    def transaction(self) -> AbstractAsyncContextManager[object]:
        return write_transaction()

    async def next_run_number(self, pipeline_id: UUID) -> int | None:
        rows = await _NEXT_RUN_NUMBER.run(pipeline_id)
        return int(rows[0]["next_run_number"]) if rows else None

    async def pipeline_config(self, pipeline_id: UUID) -> tuple[str, str] | None:
        cached = self._configs.get(pipeline_id)
        if cached is not None:
            return cached
        # Not scoped to a tenant: the run operations check the caller's tenant before they get here.
        row = (
            await Pipeline.select(Pipeline.name, Pipeline.config, Pipeline.org, Pipeline.tenant)
            .where(Pipeline.id == pipeline_id)
            .first()
        )
        if row is None:
            return None
        if len(self._configs) >= CONFIG_CACHE_SIZE:
            oldest = next(iter(self._configs))
            del self._configs[oldest]
            self._owners.pop(oldest, None)
        self._configs[pipeline_id] = (row["name"], row["config"])
        self._owners[pipeline_id] = (row["org"], row["tenant"])
        return self._configs[pipeline_id]

    async def pipeline_owner(self, pipeline_id: UUID) -> tuple[UUID, UUID] | None:
        if pipeline_id not in self._owners and await self.pipeline_config(pipeline_id) is None:
            return None
        return self._owners.get(pipeline_id)

    def forget_pipeline(self, pipeline_id: UUID) -> None:
        self._configs.pop(pipeline_id, None)
        self._owners.pop(pipeline_id, None)

    async def insert_run(self, new: NewRun) -> None:
        run = new.run
        created = run.created_at or datetime.now(UTC)
        org, tenant = run.org or self.org, run.tenant or self.tenant
        async with write_transaction():
            await _INSERT_RUN.run(
                run.id,
                org,
                tenant,
                new.pipeline_id,
                run.number,
                run.status.value,
                new.branch,
                new.sha,
                new.message,
                new.author,
                new.trigger,
                new.error,
                run.cancel_requested,
                created,
                run.started_at,
                run.finished_at,
                new.source,
                json.dumps(asdict(new.workspace) if new.workspace is not None else {}),
                json.dumps(dict(new.env)),
                run.waiting_reason,
            )
            for stage in run.stages.values():
                await _INSERT_STAGE.run(
                    stage.id,
                    org,
                    tenant,
                    stage.run_id,
                    stage.name,
                    stage.index,
                    stage.status.value,
                    json.dumps(list(stage.needs)),
                    json.dumps(spec_toloaded(stage.spec, stage.secret_templates, stage.queue_timeout_s)),
                    json.dumps(stage.labels),
                    stage.executor,
                    stage.attempt,
                    stage.infra_failures,
                    stage.user_retries_used,
                    stage.agent_id,
                    stage.lease_id,
                    stage.lease_deadline,
                    stage.timeout_deadline,
                    stage.exit_code,
                    stage.message,
                    stage.queued_at,
                    stage.started_at,
                    stage.finished_at,
                    stage.log_seq,
                    stage.log_size,
                    stage.waiting_reason,
                )

    async def save_stage(self, stage: StageState) -> None:
        await _SAVE_STAGE.run(
            stage.status.value,
            stage.attempt,
            stage.infra_failures,
            stage.user_retries_used,
            stage.agent_id,
            stage.lease_id,
            stage.lease_deadline,
            stage.timeout_deadline,
            stage.exit_code,
            stage.message,
            stage.queued_at,
            stage.started_at,
            stage.finished_at,
            stage.log_seq,
            stage.log_size,
            stage.waiting_reason,
            stage.id,
        )

    async def save_run(self, run: RunState) -> None:
        await _SAVE_RUN.run(
            run.status.value,
            run.cancel_requested,
            run.started_at,
            run.finished_at,
            run.waiting_reason,
            run.id,
        )

    async def load_active_runs(self) -> list[RunState]:
        rows = await Run.select().where(Run.status.is_in(ACTIVE)).order_by(Run.created_at)
        return await _with_stages(rows)

    async def load_run(self, run_id: UUID) -> RunState | None:
        """One run and its stages, whatever its status (a finished run an operator retries)."""
        rows = await Run.select().where(Run.id == run_id)
        runs = await _with_stages(rows)
        return runs[0] if runs else None

    async def run_origin(self, run_id: UUID) -> RunOrigin | None:
        """What a stored run was made from (for a re-run)."""
        row = await Run.select().where(Run.id == run_id).first()
        if row is None:
            return None
        workspace = loaded(row["workspace"]) or None
        env = loaded(row["env"]) or {}
        return RunOrigin(
            id=row["id"],
            pipeline_id=row["pipeline"],
            number=row["number"],
            status=StageStatus(row["status"]),
            branch=row["branch"],
            sha=row["sha"],
            message=row["commit_message"],
            author=row["author"],
            source=row["pipeline_source"],
            workspace=WorkspaceSource(**workspace) if isinstance(workspace, dict) else None,
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {},
        )

    async def load_agents(self) -> list[AgentConn]:
        rows = await Agent.select()
        return [
            AgentConn(
                org=row["org"],
                tenant=None if row["org_wide"] else row["tenant"],
                id=row["id"],
                name=row["name"],
                labels=dict(loaded(row["labels"])),
                executors=tuple(loaded(row["executors"])),
                capacity=row["capacity"],
                version=row["version"],
                agent_draining=row["draining"],
                operator_draining=row["operator_drain"],
                last_seen=_aware(row["last_seen"]),
            )
            for row in rows
        ]

    async def save_agent_status(self, agent: AgentConn) -> None:
        status = "offline" if not agent.online else ("draining" if agent.draining else "online")
        await Agent.update(
            {
                Agent.status: status,
                Agent.draining: agent.agent_draining,
                Agent.operator_drain: agent.operator_draining,
                Agent.last_seen: agent.last_seen,
            }
        ).where(Agent.id == agent.id)


async def _with_stages(rows: list[dict[str, Any]]) -> list[RunState]:
    """Runs (rows of the run table) as the scheduler holds them, with their stages."""
    runs: dict[UUID, RunState] = {}
    for row in rows:
        runs[row["id"]] = RunState(
            id=row["id"],
            pipeline_id=row["pipeline"],
            number=row["number"],
            status=StageStatus(row["status"]),
            cancel_requested=row["cancel_requested"],
            started_at=_aware(row["started_at"]),
            finished_at=_aware(row["finished_at"]),
            created_at=_aware(row["created_at"]),
            error=row["error"],
            org=row["org"],
            tenant=row["tenant"],
            waiting_reason=row["waiting_reason"],
        )
    if not runs:
        return []
    stage_rows = await StageRun.select().where(StageRun.run.is_in(list(runs))).order_by(StageRun.index)
    for row in stage_rows:
        run = runs[row["run"]]
        spec = loaded(row["spec"])
        stage = StageState(
            id=row["id"],
            run_id=row["run"],
            name=row["name"],
            index=row["index"],
            status=StageStatus(row["status"]),
            spec=spec_fromloaded(spec),
            needs=tuple(loaded(row["needs"])),
            executor=row["executor"],
            labels=dict(loaded(row["labels"])),
            attempt=row["attempt"],
            infra_failures=row["infra_failures"],
            user_retries_used=row["user_retries_used"],
            agent_id=row["agent"],
            lease_id=row["lease_id"],
            lease_deadline=_aware(row["lease_deadline"]),
            timeout_deadline=_aware(row["timeout_deadline"]),
            exit_code=row["exit_code"],
            message=row["message"],
            queued_at=_aware(row["queued_at"]),
            started_at=_aware(row["started_at"]),
            finished_at=_aware(row["finished_at"]),
            log_seq=row["log_seq"],
            log_size=row["log_size"],
            org=row["org"],
            tenant=row["tenant"],
            secret_templates=templates_fromloaded(spec),
            queue_timeout_s=queue_timeout_fromloaded(spec),
            waiting_reason=row["waiting_reason"],
        )
        if run.cancel_requested and stage.lease_id is not None:
            stage.cancel_deadline = datetime.now(UTC) + timedelta(seconds=CANCEL_GRACE_S)
        run.stages[stage.name] = stage
    for run in runs.values():
        run.when_skipped = frozenset(
            s.name
            for s in run.stages.values()
            if s.status is StageStatus.SKIPPED and s.message == WHEN_SKIPPED
        )
    return list(runs.values())
