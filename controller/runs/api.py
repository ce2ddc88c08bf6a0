"""REST: runs of a pipeline — trigger, list, get, cancel, re-run, retry a stage, stage logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.datastructures import State

from controller.api_errors import error
from controller.pipelines.services import get_pipeline
from controller.runs import services
from controller.services import Services

MAX_NUMBER = 2**31 - 1

MAX_PAGE = 200


@dataclass
class TriggerRun:
    """Body of POST …/runs."""

    branch: str = "main"
    sha: str | None = None
    message: str = ""
    author: str = ""


class RunsController(Controller):
    """Runs live under their pipeline and are addressed by number."""

    path = "/api/v1/pipelines/{pipeline_id:uuid}/runs"
    tags = ["runs"]

    async def _pipeline(self, svc: Services, pipeline_id: UUID) -> dict[str, Any]:
        row = await get_pipeline(svc.tenant, pipeline_id)
        if row is None:
            raise error(404, f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        return row

    async def _run(self, svc: Services, pipeline_id: UUID, number: int) -> dict[str, Any]:
        await self._pipeline(svc, pipeline_id)
        row = await services.find_run(pipeline_id, number) if 1 <= number <= MAX_NUMBER else None
        if row is None:
            raise error(404, f"run {number} of pipeline {pipeline_id} not found")
        return row

    @post("/", status_code=201)
    async def trigger(self, state: State, pipeline_id: UUID, data: TriggerRun) -> dict[str, Any]:
        """Start a run; returns it with its `number`."""
        svc: Services = state.services
        branch = data.branch.strip() if isinstance(data.branch, str) else data.branch
        repo_id = svc.triggers.repository_of(pipeline_id) if svc.triggers is not None else None
        if repo_id is not None and svc.triggers is not None:
            # A watched repository's pipeline runs its .buildit.kdl at a commit, with that checkout.
            return await _run_repository(svc, repo_id, branch, data.sha)
        run = await svc.scheduler.trigger(
            pipeline_id,
            branch=branch,
            sha=data.sha or "",
            message=data.message,
            author=data.author,
            trigger="api",
        )
        return services.new_run_json(run, branch, data.sha or "", data.message, data.author, "api")

    @get("/")
    async def list_runs(
        self, state: State, pipeline_id: UUID, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        """Newest first; page with `?before=<number>`."""
        svc: Services = state.services
        await self._pipeline(svc, pipeline_id)
        if not 1 <= limit <= MAX_PAGE:
            raise error(400, f"'limit' must be between 1 and {MAX_PAGE}")
        if before is not None and before < 1:
            raise error(400, "'before' must be a run number (>= 1)")
        if before is not None and before > MAX_NUMBER:
            before = None  # every run number is below it
        return {"runs": await services.list_runs(pipeline_id, limit, before)}

    @get("/{number:int}")
    async def get_run(self, state: State, pipeline_id: UUID, number: int) -> dict[str, Any]:
        """A run with its stages."""
        svc: Services = state.services
        return await services.run_with_stages(await self._run(svc, pipeline_id, number))

    @post("/{number:int}/cancel", status_code=200)
    async def cancel(self, state: State, pipeline_id: UUID, number: int) -> dict[str, Any]:
        """Cancel a run; running stages are told to stop at once."""
        svc: Services = state.services
        row = await self._run(svc, pipeline_id, number)
        if row["status"] in ("succeeded", "failed", "cancelled", "skipped", "timed_out", "error"):
            raise error(409, f"run {number} already finished ({row['status']}); nothing to cancel")
        await svc.scheduler.cancel_run(row["id"])
        fresh = await services.find_run(pipeline_id, number)
        assert fresh is not None
        return await services.run_with_stages(fresh)

    @post("/{number:int}/rerun", status_code=201)
    async def rerun(self, state: State, pipeline_id: UUID, number: int) -> dict[str, Any]:
        """A new run (next number) of a finished run: same pipeline file, branch, commit and metadata."""
        svc: Services = state.services
        row = await self._run(svc, pipeline_id, number)
        repo_id = svc.triggers.repository_of(pipeline_id) if svc.triggers is not None else None
        # The mirror's URL as agents reach it now (the controller's address may have changed).
        repo_url = svc.triggers.git_url(repo_id) if svc.triggers is not None and repo_id else None
        run = await svc.scheduler.rerun(row["id"], repo_url=repo_url)
        fresh = await services.find_run(run.pipeline_id, run.number)
        assert fresh is not None
        return await services.run_with_stages(fresh)

    @post("/{number:int}/stages/{name:str}/retry", status_code=200)
    async def retry_stage(self, state: State, pipeline_id: UUID, number: int, name: str) -> dict[str, Any]:
        """Run a failed, timed-out, errored or cancelled stage again (attempt + 1), and what it blocked."""
        svc: Services = state.services
        row = await self._run(svc, pipeline_id, number)
        await svc.scheduler.retry_stage(row["id"], name)
        fresh = await services.find_run(pipeline_id, number)
        assert fresh is not None
        return await services.run_with_stages(fresh)

    @get("/{number:int}/stages/{name:str}/log", media_type="text/plain")
    async def stage_log(
        self,
        state: State,
        pipeline_id: UUID,
        number: int,
        name: str,
        offset: int = 0,
        attempt: int | None = None,
    ) -> Response[bytes]:
        """Plain-text log from byte `offset`; `X-Log-Size` and `X-Next-Offset` tell where to continue."""
        svc: Services = state.services
        run = await self._run(svc, pipeline_id, number)
        stage = await services.find_stage(run["id"], name)
        if stage is None:
            raise error(404, f"run {number} has no stage '{name}'")
        if offset < 0:
            raise error(400, "'offset' must be >= 0")
        current = stage["attempt"]
        chosen = current if attempt is None else attempt
        if not 1 <= chosen <= current:
            raise error(404, f"stage '{name}' has attempts 1 to {current}")
        path = svc.logs.find(run["id"], name, chosen)
        size = stage["log_size"] if chosen == current else (path.stat().st_size if path.exists() else 0)
        data = svc.logs.read(path, offset, size)
        next_offset = offset + len(data) if offset < size else size
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"X-Log-Size": str(size), "X-Next-Offset": str(next_offset), "X-Attempt": str(chosen)},
        )


async def _run_repository(svc: Services, repo_id: UUID, branch: str, sha: str | None) -> dict[str, Any]:
    assert svc.triggers is not None
    if sha is not None and not (len(sha) == 40 and all(c in "0123456789abcdefABCDEF" for c in sha)):
        raise error(400, "'sha' must be a full 40-character hexadecimal commit id")
    run = await svc.triggers.trigger(repo_id, branch or None, sha.lower() if sha else None)
    if run is None:
        raise error(422, "that commit has no .buildit.kdl at the top of the repository: nothing to run")
    row = await services.find_run(run.pipeline_id, run.number)
    assert row is not None
    return await services.run_with_stages(row)
