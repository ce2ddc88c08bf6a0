"""The scheduler's persistence, on the Piccolo tables of the runs, pipelines and agents domains."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from agent.contract.types import StageSpec, StageStatus, WorkspaceSource
from controller.agents.tables import Agent
from controller.db.columns import loaded
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run, StageRun
from controller.scheduling.model import RunState, StageState
from controller.scheduling.scheduler import CANCEL_GRACE_S, AgentConn, NewRun

ACTIVE = [s.value for s in StageStatus if not s.finished]


def spec_toloaded(spec: StageSpec) -> dict[str, Any]:
    """A stage spec as stored (secrets are never written to the database)."""
    data = asdict(spec)
    data["secrets"] = {}
    return data


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
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class PiccoloStore:
    """Implements `controller.scheduling.scheduler.Store`."""

    def __init__(self, org: UUID, tenant: UUID) -> None:
        self.org = org
        self.tenant = tenant

    async def next_run_number(self, pipeline_id: UUID) -> int:
        rows = await (
            Pipeline.update({Pipeline.next_run_number: Pipeline.next_run_number + 1})
            .where(Pipeline.id == pipeline_id)
            .returning(Pipeline.next_run_number)
        )
        return int(rows[0]["next_run_number"])

    async def pipeline_config(self, pipeline_id: UUID) -> tuple[str, str] | None:
        row = (
            await Pipeline.select(Pipeline.name, Pipeline.config)
            .where((Pipeline.id == pipeline_id) & (Pipeline.tenant == self.tenant))
            .first()
        )
        return None if row is None else (row["name"], row["config"])

    async def insert_run(self, new: NewRun) -> None:
        run = new.run
        created = run.created_at or datetime.now(UTC)
        async with Run._meta.db.transaction():
            await Run.insert(
                Run(
                    id=run.id,
                    org=self.org,
                    tenant=self.tenant,
                    pipeline=new.pipeline_id,
                    number=run.number,
                    status=run.status.value,
                    branch=new.branch,
                    sha=new.sha,
                    commit_message=new.message,
                    author=new.author,
                    trigger=new.trigger,
                    error=new.error,
                    created_at=created,
                    finished_at=run.finished_at,
                )
            )
            if run.stages:
                await StageRun.insert(*[self._stage_row(stage) for stage in run.stages.values()])

    def _stage_row(self, stage: StageState) -> StageRun:
        return StageRun(
            id=stage.id,
            org=self.org,
            tenant=self.tenant,
            run=stage.run_id,
            name=stage.name,
            index=stage.index,
            status=stage.status.value,
            needs=list(stage.needs),
            spec=spec_toloaded(stage.spec),
            labels=stage.labels,
            executor=stage.executor,
            message=stage.message,
            finished_at=stage.finished_at,
        )

    async def save_stage(self, stage: StageState) -> None:
        await StageRun.update(
            {
                StageRun.status: stage.status.value,
                StageRun.attempt: stage.attempt,
                StageRun.infra_failures: stage.infra_failures,
                StageRun.user_retries_used: stage.user_retries_used,
                StageRun.agent: stage.agent_id,
                StageRun.lease_id: stage.lease_id,
                StageRun.lease_deadline: stage.lease_deadline,
                StageRun.timeout_deadline: stage.timeout_deadline,
                StageRun.exit_code: stage.exit_code,
                StageRun.message: stage.message,
                StageRun.queued_at: stage.queued_at,
                StageRun.started_at: stage.started_at,
                StageRun.finished_at: stage.finished_at,
                StageRun.log_seq: stage.log_seq,
                StageRun.log_size: stage.log_size,
            }
        ).where(StageRun.id == stage.id)

    async def save_run(self, run: RunState) -> None:
        await Run.update(
            {
                Run.status: run.status.value,
                Run.cancel_requested: run.cancel_requested,
                Run.started_at: run.started_at,
                Run.finished_at: run.finished_at,
            }
        ).where(Run.id == run.id)

    async def load_active_runs(self) -> list[RunState]:
        rows = await Run.select().where(Run.status.is_in(ACTIVE)).order_by(Run.created_at)
        runs: dict[UUID, RunState] = {}
        for row in rows:
            runs[row["id"]] = RunState(
                id=row["id"],
                pipeline_id=row["pipeline"],
                number=row["number"],
                status=StageStatus(row["status"]),
                cancel_requested=row["cancel_requested"],
                started_at=_aware(row["started_at"]),
            )
        if not runs:
            return []
        stage_rows = await StageRun.select().where(StageRun.run.is_in(list(runs))).order_by(StageRun.index)
        for row in stage_rows:
            run = runs[row["run"]]
            stage = StageState(
                id=row["id"],
                run_id=row["run"],
                name=row["name"],
                index=row["index"],
                status=StageStatus(row["status"]),
                spec=spec_fromloaded(row["spec"]),
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
            )
            if run.cancel_requested and stage.lease_id is not None:
                stage.cancel_deadline = datetime.now(UTC) + timedelta(seconds=CANCEL_GRACE_S)
            run.stages[stage.name] = stage
        return list(runs.values())

    async def load_agents(self) -> list[AgentConn]:
        rows = await Agent.select().where(Agent.tenant == self.tenant)
        return [
            AgentConn(
                id=row["id"],
                name=row["name"],
                labels=dict(loaded(row["labels"])),
                executors=tuple(loaded(row["executors"])),
                capacity=row["capacity"],
                version=row["version"],
                draining=row["draining"],
                last_seen=_aware(row["last_seen"]),
            )
            for row in rows
        ]

    async def save_agent_status(self, agent: AgentConn) -> None:
        status = "offline" if not agent.online else ("draining" if agent.draining else "online")
        await Agent.update(
            {Agent.status: status, Agent.draining: agent.draining, Agent.last_seen: agent.last_seen}
        ).where(Agent.id == agent.id)
