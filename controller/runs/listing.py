"""Listing runs across pipelines, filtered and paged, newest first: the dashboard and gRPC ListRuns.

Read-only over the runs and pipelines tables (the scheduler owns writes). The dashboard's filters
are exact matches chosen from what exists (statuses, branches, pipelines), so a filter form never
offers a value that matches nothing; integrations page by creation time (a token that stays valid
while new runs arrive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from controller.pipelines.tables import Pipeline
from controller.runs.services import run_json
from controller.runs.tables import Run

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "timed_out", "error")
#: `active` is a filter of its own: every run not finished yet.
ACTIVE = ("pending", "running")
PER_PAGE = 25
MAX_PAGE = 10_000


@dataclass(frozen=True)
class RunFilter:
    """What the dashboard shows: '' means any."""

    status: str = ""
    branch: str = ""
    pipeline: UUID | None = None


@dataclass(frozen=True)
class RunPage:
    """One page of runs (as `run_json` plus `pipeline_name`) and where the others are."""

    runs: list[dict[str, Any]]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages the filter has (at least 1, so page 1 of nothing reads naturally)."""
        return max(1, -(-self.total // self.per_page))


def _where(tenant: UUID, filters: RunFilter) -> Any:
    condition: Any = Run.tenant == tenant
    if filters.status == "active":
        condition &= Run.status.is_in(list(ACTIVE))
    elif filters.status:
        condition &= Run.status == filters.status
    if filters.branch:
        condition &= Run.branch == filters.branch
    if filters.pipeline is not None:
        condition &= Run.pipeline == filters.pipeline
    return condition


async def recent_runs(tenant: UUID, filters: RunFilter, page: int = 1, per_page: int = PER_PAGE) -> RunPage:
    """Page `page` (1-based) of the tenant's runs matching `filters`, newest first."""
    page = min(max(page, 1), MAX_PAGE)
    where = _where(tenant, filters)
    total = int(await Run.count().where(where))
    rows = (
        await Run.select(*Run.all_columns(), Run.pipeline.name.as_alias("pipeline_name"))
        .where(where)
        .order_by(Run.created_at, ascending=False)
        .order_by(Run.number, ascending=False)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    runs = []
    for row in rows:
        out = run_json(row)
        out["pipeline_name"] = row["pipeline_name"]
        runs.append(out)
    return RunPage(runs, page, per_page, total)


async def runs_before(
    tenant: UUID,
    limit: int,
    before: datetime | None = None,
    pipeline: UUID | None = None,
    branch: str = "",
    statuses: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Up to `limit` run rows created before `before`, newest first (any pipeline, branch, status)."""
    query = Run.select().where(Run.tenant == tenant)
    if before is not None:
        query = query.where(Run.created_at < before)
    if pipeline is not None:
        query = query.where(Run.pipeline == pipeline)
    if branch:
        query = query.where(Run.branch == branch)
    if statuses:
        query = query.where(Run.status.is_in(list(statuses)))
    rows: list[dict[str, Any]] = await query.order_by(Run.created_at, ascending=False).limit(limit)
    return rows


async def branches(tenant: UUID, limit: int = 200) -> list[str]:
    """Branches that have runs, by name, for the filter form."""
    rows = (
        await Run.select(Run.branch).where(Run.tenant == tenant).distinct().order_by(Run.branch).limit(limit)
    )
    return [str(row["branch"]) for row in rows if row["branch"]]


async def pipeline_names(tenant: UUID) -> list[tuple[UUID, str]]:
    """(id, name) of every pipeline, by name, for the filter form and navigation."""
    rows = (
        await Pipeline.select(Pipeline.id, Pipeline.name)
        .where(Pipeline.tenant == tenant)
        .order_by(Pipeline.name)
    )
    return [(row["id"], str(row["name"])) for row in rows]
