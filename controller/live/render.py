"""The JSON the live socket sends for runs, stages and agents: the REST API's shapes, read fresh.

Rendered from the database (and the scheduler's live view for agents) rather than from the event's
in-memory object, so a page sees exactly what a REST reload would show. Runs and stages of other
tenants' pipelines render as None (not sent).

The scheduler publishes events inside its operation's database transaction, so a reader on another
connection (PostgreSQL) would still see the old rows: `settled` waits for that operation to end.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from controller.agents.services import agent_json, list_agent_views
from controller.deps import Deps
from controller.runs.services import agent_names, run_json, run_row_with_pipeline, stage_json, stage_rows


async def settled(deps: Deps) -> None:
    """Wait until the scheduler operation that may have published an event committed its rows."""
    await deps.scheduler.settled()


async def run_message(deps: Deps, run_id: UUID) -> dict[str, Any] | None:
    """`{"type":"run","run":…}`: `run_json` plus `pipeline_id` and `pipeline_name`."""
    tenant, message = await run_message_of(run_id)
    return message if tenant == deps.tenant else None


async def run_message_of(run_id: UUID) -> tuple[UUID | None, dict[str, Any] | None]:
    """(the run's tenant, its message): rendered once, sent to that tenant's watchers only."""
    row = await run_row_with_pipeline(run_id)
    if row is None:
        return None, None
    run = run_json(row)
    run["pipeline_name"] = row["pipeline_name"]
    return UUID(str(row["pipeline_tenant"])), {"type": "run", "run": run}


async def run_tenant_ok(deps: Deps, run_id: UUID) -> bool:
    """Whether the run exists and belongs to this controller's tenant."""
    row = await run_row_with_pipeline(run_id)
    return row is not None and row["pipeline_tenant"] == deps.tenant


async def stage_messages(run_id: UUID, name: str | None = None) -> list[dict[str, Any]]:
    """`{"type":"stage","stage":…}` for one stage of a run (or all, in file order), plus `run_id`."""
    rows = await stage_rows(run_id, name)
    names = await agent_names(rows)
    out = []
    for row in rows:
        stage = stage_json(row, names)
        stage["run_id"] = str(run_id)
        out.append({"type": "stage", "stage": stage})
    return out


async def agent_messages(deps: Deps) -> dict[UUID, dict[str, Any]]:
    """`{"type":"agent","agent":…}` for every agent, as GET /api/v1/agents renders them, by id."""
    return {
        v.id: {"type": "agent", "agent": agent_json(v)}
        for v in await list_agent_views(deps.scheduler, deps.tenant)
    }


async def agent_message(deps: Deps, agent_id: UUID) -> dict[str, Any] | None:
    """One agent's message (None when it is not this tenant's)."""
    return (await agent_messages(deps)).get(agent_id)
