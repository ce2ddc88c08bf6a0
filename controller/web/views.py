"""The UI's pages and htmx fragments (Litestar controllers rendering web/templates/).

Every page is complete HTML on first load; with the `HX-Request` header the same URL answers the
page's live fragment (`_name.html`), which the page's script re-fetches when the `/ws` socket says
something changed. Actions (trigger, cancel, re-run, retry, drain) call the REST API from the
browser, so the UI and integrations go through one code path.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from controller.agents.services import list_agent_views
from controller.artifacts import services as artifacts
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Invalid, NotFound
from controller.pipelines.parsing import parse
from controller.pipelines.services import diagnostic_json, get_pipeline, list_pipelines, versions
from controller.repos.commands import pipeline_file_status
from controller.runs import listing
from controller.runs import services as runs
from controller.runs.timing import run_timing
from controller.web import logpage, runview
from controller.web.dag_layout import LayoutError, layout
from controller.web.format import FINISHED
from controller.web.kdl_highlight import highlight

MAX_NUMBER = 2**31 - 1


def _fragment(request: Request[Any, Any, Any]) -> bool:
    """An htmx request for the page's live fragment (not a boosted navigation or a history restore,
    which need the whole page)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-boosted") != "true"
        and headers.get("hx-history-restore-request") != "true"
    )


def _not_found(message: str) -> Template:
    return Template(template_name="not_found.html", context={"message": message}, status_code=404)


def _parse_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


async def _run_or_none(
    deps: Deps, pipeline_id: UUID, number: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    pipeline = await get_pipeline(deps.tenant, pipeline_id)
    if pipeline is None or not 1 <= number <= MAX_NUMBER:
        return pipeline, None
    return pipeline, await runs.find_run(pipeline_id, number)


def _page_links(path: str, params: dict[str, str], page: listing.RunPage) -> dict[str, str | None]:
    from urllib.parse import urlencode

    def link(number: int) -> str:
        query = {k: v for k, v in params.items() if v}
        if number > 1:
            query["page"] = str(number)
        return path + ("?" + urlencode(query) if query else "")

    return {
        "prev": link(page.page - 1) if page.page > 1 else None,
        "next": link(page.page + 1) if page.page < page.pages else None,
    }


class PagesController(Controller):
    """Dashboard, pipelines, runs, stage logs and the agent fleet."""

    path = "/"
    opt = requires(Permission.READ)
    include_in_schema = False

    @get("/")
    async def dashboard(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        status: FromQuery[str] = "",
        branch: FromQuery[str] = "",
        pipeline: FromQuery[str] = "",
        page: FromQuery[int] = 1,
    ) -> Template:
        """Recent runs of every pipeline, filterable by status, branch and pipeline, paged."""
        pipeline_id = _parse_uuid(pipeline) if pipeline else None
        if status and status != "active" and status not in listing.STATUSES:
            status = ""
        filters = listing.RunFilter(status=status, branch=branch.strip(), pipeline=pipeline_id)
        result = await listing.recent_runs(deps.tenant, filters, page)
        params = {"status": status, "branch": filters.branch, "pipeline": str(pipeline_id or "")}
        context = {
            "page": result,
            "filters": filters,
            "links": _page_links("/", params, result),
            "filtered": bool(status or filters.branch or pipeline_id),
            "show_pipeline": True,
            "empty_hint": "dashboard",
        }
        if _fragment(request):
            return Template(template_name="_runs.html", context=context)
        names = await listing.pipeline_names(deps.tenant)
        context.update(
            statuses=listing.STATUSES,
            branches=await listing.branches(deps.tenant),
            pipelines=names,
            has_pipelines=bool(names),
            active="dashboard",
        )
        return Template(template_name="dashboard.html", context=context)

    @get("/pipelines")
    async def pipelines(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> Template:
        """Every pipeline with its last run's status and time (live), and links to its page."""
        rows = await list_pipelines(deps.tenant)
        context = {"pipelines": rows, "last_runs": await listing.last_runs(rows), "active": "pipelines"}
        if _fragment(request):
            return Template(template_name="_pipelines.html", context=context)
        return Template(template_name="pipelines.html", context=context)

    @get("/pipelines/{pipeline_id:uuid}")
    async def pipeline(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        pipeline_id: FromPath[UUID],
        page: FromQuery[int] = 1,
    ) -> Template:
        """A pipeline: its runs (live), a trigger form, its source highlighted and its stages."""
        row = await get_pipeline(deps.tenant, pipeline_id)
        if row is None:
            return _not_found(f"There is no pipeline {pipeline_id}.")
        result = await listing.recent_runs(deps.tenant, listing.RunFilter(pipeline=pipeline_id), page)
        context: dict[str, Any] = {
            "page": result,
            "links": _page_links(f"/pipelines/{pipeline_id}", {}, result),
            "filtered": False,
            "show_pipeline": False,
            "empty_hint": "pipeline",
            "pipeline": row,
        }
        if _fragment(request):
            return Template(template_name="_runs.html", context=context)
        pipeline, problems = await parse(row["config"])
        stages: list[Any] = list(pipeline.stages) if pipeline is not None else []
        diagnostics = [diagnostic_json(d) for d in problems]
        engine = deps.triggers
        repo = engine.repository(row["repository"], deps.tenant) if engine and row["repository"] else None
        file_status = await pipeline_file_status(engine, repo) if engine and repo else None
        context.update(
            source=highlight(row["config"]),
            stages=stages,
            diagnostics=diagnostics,
            repo=repo,
            file_status=file_status,
            versions=await versions(row),
            active="pipelines",
        )
        return Template(template_name="pipeline.html", context=context)

    @get("/pipelines/{pipeline_id:uuid}/runs/{number:int}")
    async def run(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
    ) -> Template:
        """A run: its DAG (live), stages, actions, diagnostics and artifacts."""
        pipeline, row = await _run_or_none(deps, pipeline_id, number)
        if pipeline is None or row is None:
            return _not_found(f"There is no run {number} of pipeline {pipeline_id}.")
        run = await runs.run_with_stages(row)
        stages = run["stages"]
        try:
            dag = layout([(s["name"], s["needs"]) for s in stages])
            dag_problem = ""
        except LayoutError as exc:
            dag, dag_problem = layout([(s["name"], []) for s in stages]), str(exc)
        base = f"/api/v1/pipelines/{pipeline_id}/runs/{number}/artifacts"
        files = [
            artifacts.artifact_json(a, f"{base}/{a['id']}")
            for a in await artifacts.list_for_run(deps.tenant, row["id"])
        ]
        context = {
            "pipeline": pipeline,
            "run": run,
            "stages": {s["name"]: s for s in stages},
            "dag": dag,
            "dag_problem": dag_problem,
            "artifacts": files,
            "finished": run["status"] in FINISHED,
            "timing": run_timing(stages),
            "retryable": runview.retryable(run),
            "tails": await runview.failure_tails(deps, run),
            "active": "pipelines",
        }
        if _fragment(request):
            return Template(template_name="_run_live.html", context=context)
        return Template(template_name="run.html", context=context)

    @get("/pipelines/{pipeline_id:uuid}/runs/{number:int}/stages/{name:str}")
    async def stage_log(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        name: FromPath[str],
        attempt: FromQuery[int | None] = None,
    ) -> Template:
        """A stage attempt's log, followed live; the page loads lines on demand (see log.js)."""
        pipeline, row = await _run_or_none(deps, pipeline_id, number)
        if pipeline is None or row is None:
            return _not_found(f"There is no run {number} of pipeline {pipeline_id}.")
        stage_row = await runs.find_stage(row["id"], name)
        if stage_row is None:
            return _not_found(f"Run {number} has no stage '{name}'.")
        run = await runs.run_with_stages(row)
        stage = next(s for s in run["stages"] if s["name"] == name)
        chosen = stage["attempt"] if attempt is None else attempt
        if not 1 <= chosen <= stage["attempt"]:
            return _not_found(f"Stage '{name}' has attempts 1 to {stage['attempt']}.")
        context: dict[str, Any] = {
            "pipeline": pipeline,
            "run": run,
            "stage": stage,
            "attempt": chosen,
            "attempts": list(range(1, stage["attempt"] + 1)),
            "retryable": runview.retryable(run),
            "active": "pipelines",
        }
        if _fragment(request):
            return Template(template_name="_log_head.html", context=context)
        # Where the commands start and how the stage ended: the page opens at the failed command.
        path, size = runview.log_file(deps, row["id"], stage, chosen)
        marks = await asyncio.to_thread(logpage.marks, path, size)
        finished = chosen < stage["attempt"] or stage["status"] in FINISHED
        context.update(
            marks=[m.json() for m in marks],
            open_line=logpage.opening_line(marks) if finished else None,
        )
        return Template(template_name="log.html", context=context)

    @get("/agents")
    async def agents(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> Template:
        """The fleet: status, labels, executors, load, version, last seen; drain and resume."""
        views = await list_agent_views(deps.scheduler, deps.tenant)
        context = {"agents": views, "active": "agents"}
        if _fragment(request):
            return Template(template_name="_agents.html", context=context)
        return Template(template_name="agents.html", context=context)


class LogLinesController(Controller):
    """JSON pages of a stage log by line, for the log view (a 200,000-line log stays usable)."""

    path = "/ui/pipelines/{pipeline_id:uuid}/runs/{number:int}/stages/{name:str}"
    opt = requires(Permission.READ)
    include_in_schema = False

    async def _log(self, deps: Deps, pipeline_id: UUID, number: int, name: str, attempt: int | None) -> Any:
        _, row = await _run_or_none(deps, pipeline_id, number)
        if row is None:
            raise NotFound(f"run {number} of pipeline {pipeline_id} not found")
        stage = await runs.find_stage(row["id"], name)
        if stage is None:
            raise NotFound(f"run {number} has no stage '{name}'")
        current = int(stage["attempt"])
        chosen = current if attempt is None else attempt
        if not 1 <= chosen <= current:
            raise NotFound(f"stage '{name}' has attempts 1 to {current}")
        return runview.log_file(deps, row["id"], stage, chosen)

    @get("/lines")
    async def lines(
        self,
        deps: NamedDependency[Deps],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        name: FromPath[str],
        attempt: FromQuery[int | None] = None,
        before: FromQuery[int | None] = None,
        after: FromQuery[int | None] = None,
        line: FromQuery[int | None] = None,
        count: FromQuery[int] = 1000,
    ) -> dict[str, object]:
        """`?before=B` the page ending at byte B (the tail without it), `?after=A` the page from byte A,
        `?line=N` the page around line N; `count` lines (at most 5000)."""
        path, size = await self._log(deps, pipeline_id, number, name, attempt)
        if sum(x is not None for x in (before, after, line)) > 1:
            raise Invalid("give at most one of 'before', 'after' and 'line'")
        if not 1 <= count <= logpage.MAX_LINES:
            raise Invalid(f"'count' must be between 1 and {logpage.MAX_LINES}")
        # File reads (newline counting over the whole log) run off the event loop, which also
        # serves gRPC to the agents.
        if after is not None:
            page = await asyncio.to_thread(logpage.page_from, path, size, after, count)
        elif line is not None:
            page = await asyncio.to_thread(logpage.page_around, path, size, max(line, 1), count)
        else:
            page = await asyncio.to_thread(logpage.page_before, path, size, before, count)
        return page.json()

    @get("/marks")
    async def marks(
        self,
        deps: NamedDependency[Deps],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        name: FromPath[str],
        attempt: FromQuery[int | None] = None,
    ) -> dict[str, object]:
        """Where each command starts and the closing line (agent.contract.logmarks), with line numbers."""
        path, size = await self._log(deps, pipeline_id, number, name, attempt)
        found = await asyncio.to_thread(logpage.marks, path, size)
        return {"marks": [m.json() for m in found], "size": size}

    @get("/search")
    async def search(
        self,
        deps: NamedDependency[Deps],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        name: FromPath[str],
        q: FromQuery[str] = "",
        attempt: FromQuery[int | None] = None,
    ) -> dict[str, object]:
        """Lines containing `q` (case-insensitive), at most 200, with their numbers."""
        path, size = await self._log(deps, pipeline_id, number, name, attempt)
        if len(q) > 200:
            raise Invalid("'q' must be at most 200 characters")
        matches, truncated = await asyncio.to_thread(logpage.search, path, size, q)
        return {"matches": [{"line": m.line, "text": m.text} for m in matches], "truncated": truncated}
