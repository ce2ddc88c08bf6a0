"""Dashboard queries (controller.runs.listing) on real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from controller.orgs.services import ensure_default_org_and_tenant
from controller.pipelines.services import create_pipeline
from controller.pipelines.tables import Pipeline
from controller.runs import listing as queries
from controller.runs.tables import Run, StageRun

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def add_run(
    org: UUID, tenant: UUID, pipeline: UUID, number: int, status: str, branch: str, minute: int
) -> None:
    await Run.insert(
        Run(
            id=uuid.uuid4(),
            org=org,
            tenant=tenant,
            pipeline=pipeline,
            number=number,
            status=status,
            branch=branch,
            sha=f"{number:040x}",
            commit_message=f"<b>commit {number}</b>",
            author="Ada",
            trigger="push",
            created_at=T0 + timedelta(minutes=minute),
            started_at=T0 + timedelta(minutes=minute),
        )
    )


async def fixture_runs() -> tuple[UUID, UUID, UUID]:
    """Two pipelines: api (runs 1-4) and web (runs 1-2), interleaved in time."""
    org, tenant = await ensure_default_org_and_tenant()
    api = (await create_pipeline(org, tenant, 'pipeline "api"\nstage "t" { run "true"; }\n', None))["id"]
    web = (await create_pipeline(org, tenant, 'pipeline "web"\nstage "t" { run "true"; }\n', None))["id"]
    await add_run(org, tenant, api, 1, "succeeded", "main", 0)
    await add_run(org, tenant, web, 1, "failed", "feature/x", 1)
    await add_run(org, tenant, api, 2, "failed", "main", 2)
    await add_run(org, tenant, api, 3, "running", "feature/x", 3)
    await add_run(org, tenant, web, 2, "pending", "main", 4)
    await add_run(org, tenant, api, 4, "cancelled", "main", 5)
    return tenant, api, web


def labels(page: queries.RunPage) -> list[str]:
    return [f"{r['pipeline_name']}#{r['number']}" for r in page.runs]


async def test_recent_runs_newest_first_across_pipelines_with_names(db: Any) -> None:
    tenant, api, _ = await fixture_runs()
    page = await queries.recent_runs(tenant, queries.RunFilter())
    assert labels(page) == ["api#4", "web#2", "api#3", "api#2", "web#1", "api#1"]
    assert page.total == 6 and page.pages == 1
    first = page.runs[0]
    assert first["pipeline_id"] == str(api) and first["status"] == "cancelled"
    assert first["commit_message"] == "<b>commit 4</b>"  # raw here; the template escapes it
    assert first["started_at"] == (T0 + timedelta(minutes=5)).isoformat()


async def test_filters_by_status_branch_pipeline_and_active(db: Any) -> None:
    tenant, api, web = await fixture_runs()
    recent = queries.recent_runs
    assert labels(await recent(tenant, queries.RunFilter(status="failed"))) == ["api#2", "web#1"]
    assert labels(await recent(tenant, queries.RunFilter(branch="feature/x"))) == ["api#3", "web#1"]
    assert labels(await recent(tenant, queries.RunFilter(pipeline=web))) == ["web#2", "web#1"]
    assert labels(await recent(tenant, queries.RunFilter(status="active"))) == ["web#2", "api#3"]
    both = queries.RunFilter(status="failed", branch="main", pipeline=api)
    assert labels(await recent(tenant, both)) == ["api#2"]
    nothing = await recent(tenant, queries.RunFilter(branch="nope"))
    assert nothing.runs == [] and nothing.total == 0 and nothing.pages == 1


async def test_paging(db: Any) -> None:
    tenant, _, _ = await fixture_runs()
    pages = [await queries.recent_runs(tenant, queries.RunFilter(), n, per_page=4) for n in (1, 2, 3)]
    assert [labels(p) for p in pages] == [["api#4", "web#2", "api#3", "api#2"], ["web#1", "api#1"], []]
    assert pages[0].pages == 2 and pages[0].total == 6
    # Nonsense page numbers are clamped, not errors.
    assert labels(await queries.recent_runs(tenant, queries.RunFilter(), -3, per_page=4))[0] == "api#4"


async def test_other_tenants_runs_are_not_shown(db: Any) -> None:
    await fixture_runs()
    assert (await queries.recent_runs(uuid.uuid4(), queries.RunFilter())).total == 0


async def test_filter_choices(db: Any) -> None:
    tenant, api, web = await fixture_runs()
    assert await queries.branches(tenant) == ["feature/x", "main"]
    assert await queries.pipeline_names(tenant) == [(api, "api"), (web, "web")]


async def add_stage(
    org: UUID, tenant: UUID, run: UUID, index: int, name: str, status: str, times: tuple[int, int, int] | None
) -> None:
    """A stage of `run`; `times`: seconds after T0 it was queued, started and finished."""
    at = [None, None, None] if times is None else [T0 + timedelta(seconds=s) for s in times]
    await StageRun.insert(
        StageRun(
            id=uuid.uuid4(),
            org=org,
            tenant=tenant,
            run=run,
            name=name,
            index=index,
            status=status,
            executor="local",
            queued_at=at[0],
            started_at=at[1],
            finished_at=at[2],
        )
    )


async def test_each_row_names_its_failed_stages_and_times_what_ran(db: Any) -> None:
    tenant, api, _ = await fixture_runs()
    org = (await Pipeline.select(Pipeline.org).where(Pipeline.id == api).first())["org"]
    run = (await Run.select(Run.id).where((Run.pipeline == api) & (Run.number == 2)).first())["id"]
    await add_stage(org, tenant, run, 0, "build", "succeeded", (0, 1, 11))
    # Failed, then retried an hour later (waited 2 s for an agent, failed again after 5 s).
    await add_stage(org, tenant, run, 1, "test", "failed", (3600, 3602, 3607))
    await add_stage(org, tenant, run, 2, "lint", "timed_out", (11, 11, 20))
    await add_stage(org, tenant, run, 3, "deploy", "skipped", None)
    page = await queries.recent_runs(tenant, queries.RunFilter(status="failed", pipeline=api))
    (row,) = page.runs
    assert row["failed_stages"] == ["test", "lint"]  # in file order
    timing = page.timings[row["id"]]
    assert timing.duration_s == 24 and timing.queued_s == 3 and timing.running_since is None
    assert (row["duration_s"], row["queued_s"]) == (24, 3)  # the run has finished
    # A run without stage rows: nothing ran yet.
    cancelled = await queries.recent_runs(tenant, queries.RunFilter(status="cancelled"))
    other = cancelled.runs[0]
    assert other["failed_stages"] == [] and cancelled.timings[other["id"]].duration_s is None
    assert other["duration_s"] is None
    # A run still running has no duration in the listing's JSON yet (the page's clock ticks).
    running = (await queries.recent_runs(tenant, queries.RunFilter(status="running"))).runs[0]
    assert (running["duration_s"], running["queued_s"]) == (None, None)


async def test_last_runs_are_each_pipelines_newest(db: Any) -> None:
    tenant, api, web = await fixture_runs()
    # The counter numbers runs: set it as triggering would have.
    await Pipeline.update({Pipeline.next_run_number: 4}).where(Pipeline.id == api)
    await Pipeline.update({Pipeline.next_run_number: 2}).where(Pipeline.id == web)
    unused = uuid.uuid4()
    rows = await Pipeline.select().where(Pipeline.tenant == tenant)
    rows.append({"id": unused, "next_run_number": 0})
    last = await queries.last_runs(rows)
    assert {pid: (r["number"], r["status"]) for pid, r in last.items()} == {
        api: (4, "cancelled"),
        web: (2, "pending"),
    }
