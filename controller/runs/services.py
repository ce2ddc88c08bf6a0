"""Reading runs, their stages and logs for the API (the scheduler owns writes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from controller.agents.tables import Agent
from controller.db.columns import loaded
from controller.runs.tables import Run, StageRun


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
    }


def new_run_json(run: Any, branch: str, sha: str, message: str, author: str, trigger: str) -> dict[str, Any]:
    """A just-triggered run from the scheduler's in-memory state (no database round trip)."""
    stages = [
        {
            "name": s.name,
            "index": s.index,
            "status": s.status.value,
            "attempt": s.attempt,
            "agent": None,
            "exit_code": s.exit_code,
            "message": s.message,
            "needs": list(s.needs),
            "executor": s.executor,
            "queued_at": _iso(s.queued_at),
            "started_at": _iso(s.started_at),
            "finished_at": _iso(s.finished_at),
            "log_size": s.log_size,
        }
        for s in run.stages.values()
    ]
    return {
        "id": str(run.id),
        "pipeline_id": str(run.pipeline_id),
        "number": run.number,
        "status": run.status.value,
        "branch": branch,
        "sha": sha,
        "commit_message": message,
        "author": author,
        "trigger": trigger,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "stages": stages,
    }


async def find_run(pipeline_id: UUID, number: int) -> dict[str, Any] | None:
    """The run `number` of a pipeline."""
    row: dict[str, Any] | None = (
        await Run.select().where((Run.pipeline == pipeline_id) & (Run.number == number)).first()
    )
    return row


async def run_with_stages(row: dict[str, Any]) -> dict[str, Any]:
    """A run and its stages, in file order."""
    stages = await StageRun.select().where(StageRun.run == row["id"]).order_by(StageRun.index)
    agent_ids = {s["agent"] for s in stages if s["agent"]}
    names: dict[Any, str] = {}
    if agent_ids:
        for agent in await Agent.select(Agent.id, Agent.name).where(Agent.id.is_in(list(agent_ids))):
            names[agent["id"]] = agent["name"]
    return run_json(row, [stage_json(s, names) for s in stages])


async def list_runs(pipeline_id: UUID, limit: int, before: int | None) -> list[dict[str, Any]]:
    """Newest runs first; `before` pages by run number."""
    query = Run.select().where(Run.pipeline == pipeline_id)
    if before is not None:
        query = query.where(Run.number < before)
    rows = await query.order_by(Run.number, ascending=False).limit(limit)
    return [run_json(r) for r in rows]


async def find_stage(run_id: UUID, name: str) -> dict[str, Any] | None:
    """A stage run by name."""
    row: dict[str, Any] | None = (
        await StageRun.select().where((StageRun.run == run_id) & (StageRun.name == name)).first()
    )
    return row
