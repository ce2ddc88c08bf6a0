"""Listing runs across pipelines, filtered and paged, newest first: the dashboard and gRPC ListRuns.

Read-only over the runs and pipelines tables (the scheduler owns writes). The dashboard's filters
are exact matches chosen from what exists (statuses, branches, pipelines), so a filter form never
offers a value that matches nothing; integrations page by creation time (a token that stays valid
while new runs arrive).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from agent.contract.types import StageStatus
from controller.pipelines.tables import Pipeline
from controller.runs.services import run_json
from controller.runs.tables import Run, StageRun
from controller.runs.timing import RunTiming, run_timing, timing_json

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "timed_out", "error")
#: Stages a run's row names as why it failed.
FAILED = frozenset({"failed", "timed_out", "error"})
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
    """One page of runs and where the others are.

    Each run is `run_json` plus `pipeline_name`, `failed_stages` (names of its failed, timed-out
    or errored stages, in file order) and `duration_s`/`queued_s` (`timing_json`); `timings` has
    each run's `RunTiming` by run id, for the pages' ticking clocks.
    """

    runs: list[dict[str, Any]]
    page: int
    per_page: int
    total: int
    timings: dict[str, RunTiming] = field(default_factory=dict)

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
    stages = await _stages_of([row["id"] for row in rows])
    runs = []
    timings: dict[str, RunTiming] = {}
    for row in rows:
        out = run_json(row)
        out["pipeline_name"] = row["pipeline_name"]
        mine = stages.get(row["id"], [])
        out["failed_stages"] = [s["name"] for s in mine if s["status"] in FAILED]
        timing = timings[out["id"]] = run_timing(mine)
        out.update(timing_json(timing, StageStatus(out["status"]).finished))
        runs.append(out)
    return RunPage(runs, page, per_page, total, timings)


async def _stages_of(run_ids: list[Any]) -> dict[Any, list[dict[str, Any]]]:
    """The stages of some runs (name, status, times), in file order, by run id: one query."""
    if not run_ids:
        return {}
    rows = (
        await StageRun.select(
            StageRun.run,
            StageRun.name,
            StageRun.status,
            StageRun.queued_at,
            StageRun.started_at,
            StageRun.finished_at,
        )
        .where(StageRun.run.is_in(run_ids))
        .order_by(StageRun.index)
    )
    out: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["run"], []).append(row)
    return out


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


async def last_runs(pipelines: Sequence[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The newest run of each pipeline (as `run_json`), by pipeline id, for the Pipelines page.

    A pipeline's newest run is the one numbered `next_run_number` (the counter numbers runs in
    order); looked up in batches, one query per 100 pipelines.
    """
    wanted = [(p["id"], int(p["next_run_number"] or 0)) for p in pipelines if p.get("next_run_number")]
    found: dict[Any, dict[str, Any]] = {}
    for start in range(0, len(wanted), 100):
        batch = wanted[start : start + 100]
        condition = functools.reduce(
            operator.or_, [(Run.pipeline == pid) & (Run.number == number) for pid, number in batch]
        )
        for row in await Run.select().where(condition):
            found[row["pipeline"]] = run_json(row)
    return found
