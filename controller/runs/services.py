"""Reading runs and their stages: `RunRecord`, and the one JSON shape of a run (the scheduler writes).

Every door reads a run through `load_run`/`record_of` and renders it from the same record: REST
and the live socket with `record_json` (or `run_json` for a list entry), gRPC with its proto codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from agent.contract.types import StageStatus
from controller.agents.tables import Agent
from controller.db.columns import loaded
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run, StageRun
from controller.runs.timing import run_timing, timing_json
from controller.scheduling.model import RunState


@dataclass(frozen=True)
class RunRecord:
    """A run as stored: its row, its stages' rows in file order, and the names they refer to."""

    row: dict[str, Any]
    stages: list[dict[str, Any]]
    #: Names of the agents the stages ran on, by agent id.
    agent_names: dict[Any, str]
    pipeline_name: str
    tenant: UUID

    @property
    def id(self) -> UUID:
        """The run's id."""
        return UUID(str(self.row["id"]))

    @property
    def pipeline_id(self) -> UUID:
        """The pipeline it is a run of."""
        return UUID(str(self.row["pipeline"]))

    @property
    def number(self) -> int:
        """Its number within the pipeline."""
        return int(self.row["number"])

    @property
    def status(self) -> str:
        """Its status word (a StageStatus value)."""
        return str(self.row["status"])

    @property
    def finished(self) -> bool:
        """Whether it has ended (nothing more will run without a retry or re-run)."""
        return StageStatus(self.status).finished


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_json(row: dict[str, Any], stages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A run for API responses."""
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "pipeline_id": str(row["pipeline"]),
        "number": row["number"],
        "status": row["status"],
        "branch": row["branch"],
        "sha": row["sha"],
        "commit_message": row["commit_message"],
        "author": row["author"],
        "trigger": row["trigger"],
        "error": row["error"],
        "cancel_requested": row["cancel_requested"],
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "waiting_reason": row["waiting_reason"],
    }
    if stages is not None:
        out["stages"] = stages
    return out


def stage_json(row: dict[str, Any], agent_names: dict[Any, str]) -> dict[str, Any]:
    """A stage run for API responses (the agent by name)."""
    needs = row["needs"]
    return {
        "name": row["name"],
        "index": row["index"],
        "status": row["status"],
        "attempt": row["attempt"],
        "agent": agent_names.get(row["agent"]) if row["agent"] else None,
        "exit_code": row["exit_code"],
        "message": row["message"],
        "needs": loaded(needs),
        "executor": row["executor"],
        "queued_at": _iso(row["queued_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "log_size": row["log_size"],
        "waiting_reason": row["waiting_reason"],
    }


async def find_run(pipeline_id: UUID, number: int) -> dict[str, Any] | None:
    """The run `number` of a pipeline."""
    row: dict[str, Any] | None = (
        await Run.select().where((Run.pipeline == pipeline_id) & (Run.number == number)).first()
    )
    return row


async def agent_names(stages: list[dict[str, Any]]) -> dict[Any, str]:
    """Names of the agents some stage rows ran on, by agent id (one query)."""
    agent_ids = list({s["agent"] for s in stages if s["agent"]})
    names: dict[Any, str] = {}
    if agent_ids:
        for agent in await Agent.select(Agent.id, Agent.name).where(Agent.id.is_in(agent_ids)):
            names[agent["id"]] = agent["name"]
    return names


async def record_of(row: dict[str, Any]) -> RunRecord:
    """The full record of a run row: its stages, their agents' names and its pipeline."""
    stages = await StageRun.select().where(StageRun.run == row["id"]).order_by(StageRun.index)
    pipeline = (
        await Pipeline.select(Pipeline.name, Pipeline.tenant).where(Pipeline.id == row["pipeline"]).first()
    )
    return RunRecord(
        row=row,
        stages=stages,
        agent_names=await agent_names(stages),
        pipeline_name=pipeline["name"] if pipeline else "",
        tenant=UUID(str(pipeline["tenant"])) if pipeline else UUID(int=0),
    )


async def load_run(run_id: UUID) -> RunRecord | None:
    """A run by id with everything needed to show it, or None."""
    row = await Run.select().where(Run.id == run_id).first()
    return None if row is None else await record_of(row)


def record_of_new_run(
    run: RunState,
    *,
    branch: str,
    sha: str,
    message: str,
    author: str,
    trigger: str,
    pipeline_name: str,
    tenant: UUID,
    agent_names: dict[Any, str],
) -> RunRecord:
    """The record of a run the scheduler just made, from its working state (no database read).

    The rows have the stored rows' keys, so every door renders it exactly as a run read back
    later; answering a trigger this way keeps three queries off the path of every new run.
    """
    row = {
        "id": run.id,
        "pipeline": run.pipeline_id,
        "number": run.number,
        "status": run.status.value,
        "branch": branch,
        "sha": sha,
        "commit_message": message,
        "author": author,
        "trigger": trigger,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "waiting_reason": run.waiting_reason,
    }
    stages = [
        {
            "id": s.id,
            "name": s.name,
            "index": s.index,
            "status": s.status.value,
            "attempt": s.attempt,
            "agent": s.agent_id,
            "exit_code": s.exit_code,
            "message": s.message,
            "needs": list(s.needs),
            "executor": s.executor,
            "queued_at": s.queued_at,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "log_size": s.log_size,
            "waiting_reason": s.waiting_reason,
        }
        for s in run.stages.values()
    ]
    return RunRecord(row, stages, agent_names, pipeline_name, tenant)


def record_json(record: RunRecord) -> dict[str, Any]:
    """A run with its stages for API responses and live updates.

    Once it has finished, with `duration_s` (the time its stages ran; null when none started)
    and `queued_s` (the time they waited for an agent while none ran), see
    `controller.runs.timing`; both are null while it runs (a reading of a run does not change
    while nothing happens to it).
    """
    out = run_json(record.row, [stage_json(s, record.agent_names) for s in record.stages])
    out.update(timing_json(run_timing(record.stages), record.finished))
    return out


async def run_with_stages(row: dict[str, Any]) -> dict[str, Any]:
    """A run row and its stages as JSON (REST views of runs found by number)."""
    return record_json(await record_of(row))


async def list_runs(pipeline_id: UUID, limit: int, before: int | None) -> list[dict[str, Any]]:
    """Newest runs first; `before` pages by run number."""
    query = Run.select().where(Run.pipeline == pipeline_id)
    if before is not None:
        query = query.where(Run.number < before)
    rows = await query.order_by(Run.number, ascending=False).limit(limit)
    return [run_json(r) for r in rows]


async def run_row_with_pipeline(run_id: UUID) -> dict[str, Any] | None:
    """A run row plus its pipeline's `pipeline_name` and `pipeline_tenant`, or None."""
    row: dict[str, Any] | None = (
        await Run.select(
            *Run.all_columns(),
            Run.pipeline.name.as_alias("pipeline_name"),
            Run.pipeline.tenant.as_alias("pipeline_tenant"),
        )
        .where(Run.id == run_id)
        .first()
    )
    return row


async def stage_rows(run_id: UUID, name: str | None = None) -> list[dict[str, Any]]:
    """The stage rows of a run in file order (or the one named)."""
    query = StageRun.select().where(StageRun.run == run_id)
    if name is not None:
        query = query.where(StageRun.name == name)
    rows: list[dict[str, Any]] = await query.order_by(StageRun.index)
    return rows


async def find_stage(run_id: UUID, name: str) -> dict[str, Any] | None:
    """A stage run by name."""
    row: dict[str, Any] | None = (
        await StageRun.select().where((StageRun.run == run_id) & (StageRun.name == name)).first()
    )
    return row


async def latest_run_at(
    pipeline_id: UUID, sha: str, branch: str | None = None, source: str | None = None
) -> dict[str, Any] | None:
    """The newest run of a pipeline at commit `sha` ("" for a stored pipeline's runs), on `branch`
    and from pipeline file `source` when given; None when there is none."""
    query = Run.select().where((Run.pipeline == pipeline_id) & (Run.sha == sha))
    if branch is not None:
        query = query.where(Run.branch == branch)
    if source is not None:
        query = query.where(Run.pipeline_source == source)
    row: dict[str, Any] | None = await query.order_by(Run.number, ascending=False).first()
    return row


async def log_files_of(pipeline_id: UUID) -> dict[UUID, dict[str, int]]:
    """Every run of a pipeline with its stages' last attempt: which log files it has (deleting one)."""
    rows = await StageRun.select(StageRun.run, StageRun.name, StageRun.attempt).where(
        StageRun.run.pipeline == pipeline_id
    )
    runs: dict[UUID, dict[str, int]] = {
        UUID(str(r["id"])): {} for r in await Run.select(Run.id).where(Run.pipeline == pipeline_id)
    }
    for row in rows:
        runs.setdefault(UUID(str(row["run"])), {})[row["name"]] = int(row["attempt"])
    return runs
