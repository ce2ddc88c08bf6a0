"""REST: runs of a pipeline — trigger, list, get, cancel, re-run, retry a stage, stage logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Invalid, NotFound
from controller.runs import listing, services
from controller.runs.commands import MAX_RUN_NUMBER, RunCommands, TriggerInput
from controller.runs.services import record_json

MAX_PAGE = 200


@dataclass
class TriggerRun:
    """Body of POST …/runs. `branch` defaults to the repository's default branch (else "main")."""

    branch: str | None = None
    sha: str | None = None
    message: str = ""
    author: str = ""
    #: Extra variables for this run, visible to the pipeline as ${env.NAME}.
    env: dict[str, str] = field(default_factory=dict)

    def command(self, target: str) -> TriggerInput:
        """The run operation's input for this body."""
        return TriggerInput(target, self.branch, self.sha, self.env, self.message, self.author)


@dataclass
class TriggerTarget(TriggerRun):
    """Body of POST /api/v1/runs: TriggerRun plus what to run."""

    #: A watched repository or a pipeline, by id or name (as gRPC TriggerRun's `repository`).
    target: str = ""


@dataclass
class CancelRun:
    """Body of POST …/cancel (optional): why, added to the cancelled stages' message."""

    reason: str = ""


class TriggersController(Controller):
    """Start a run of anything by name, and list runs across pipelines: what the CLI uses."""

    path = "/api/v1/runs"
    opt = requires(Permission.RUN)
    tags = ["runs"]

    @post("/", status_code=201)
    async def trigger(
        self, commands: NamedDependency[RunCommands], data: JSONBody[TriggerTarget]
    ) -> dict[str, Any]:
        """Start a run of `target` (repository or pipeline, id or name); returns it with its `number`."""
        return record_json(await commands.trigger(data.command(data.target)))

    @get("/", opt=requires(Permission.READ))
    async def recent(
        self,
        commands: NamedDependency[RunCommands],
        target: FromQuery[str | None] = None,
        status: FromQuery[str] = "",
        branch: FromQuery[str] = "",
        limit: FromQuery[int] = 20,
        page: FromQuery[int] = 1,
    ) -> dict[str, Any]:
        """The tenant's runs across pipelines, newest first, as the dashboard lists them (what
        `buildit runs` shows): `target` narrows to one repository or pipeline (id or name)."""
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"'limit' must be between 1 and {MAX_PAGE}")
        if not 1 <= page <= listing.MAX_PAGE:
            raise Invalid(f"'page' must be between 1 and {listing.MAX_PAGE}")
        if status and status not in (*listing.STATUSES, "active"):
            raise Invalid(f"'status' must be one of {', '.join(listing.STATUSES)} or active, got {status!r}")
        pipeline = (await commands.resolve(target)).pipeline_id if target is not None else None
        filters = listing.RunFilter(status=status, branch=branch, pipeline=pipeline)
        found = await listing.recent_runs(commands.tenant, filters, page, limit)
        return {"runs": found.runs, "page": found.page, "pages": found.pages, "total": found.total}


class RunsController(Controller):
    """Runs live under their pipeline and are addressed by number; each handler adapts one command."""

    path = "/api/v1/pipelines/{pipeline_id:uuid}/runs"
    opt = requires(Permission.READ)
    tags = ["runs"]

    @post("/", status_code=201, opt=requires(Permission.RUN))
    async def trigger(
        self, commands: NamedDependency[RunCommands], pipeline_id: FromPath[UUID], data: JSONBody[TriggerRun]
    ) -> dict[str, Any]:
        """Start a run; returns it with its `number`."""
        target = await commands.pipeline(pipeline_id)
        return record_json(await commands.trigger(data.command(str(pipeline_id)), target))

    @get("/")
    async def list_runs(
        self,
        commands: NamedDependency[RunCommands],
        pipeline_id: FromPath[UUID],
        limit: FromQuery[int] = 50,
        before: FromQuery[int | None] = None,
    ) -> dict[str, Any]:
        """Newest first; page with `?before=<number>`."""
        await commands.pipeline(pipeline_id)
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"'limit' must be between 1 and {MAX_PAGE}")
        if before is not None and before < 1:
            raise Invalid("'before' must be a run number (>= 1)")
        if before is not None and before > MAX_RUN_NUMBER:
            before = None  # every run number is below it
        return {"runs": await services.list_runs(pipeline_id, limit, before)}

    @get("/{number:int}")
    async def get_run(
        self, commands: NamedDependency[RunCommands], pipeline_id: FromPath[UUID], number: FromPath[int]
    ) -> dict[str, Any]:
        """A run with its stages."""
        return record_json(await commands.find(pipeline_id, number))

    @post("/{number:int}/cancel", status_code=200, opt=requires(Permission.RUN))
    async def cancel(
        self,
        commands: NamedDependency[RunCommands],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        data: JSONBody[CancelRun | None] = None,
    ) -> dict[str, Any]:
        """Cancel a run; running stages are told to stop at once. The body is optional."""
        reason = data.reason if data is not None else ""
        if not isinstance(reason, str):
            raise Invalid("'reason' must be a string (one line of at most 500 characters)")
        return record_json(await commands.cancel(await commands.find(pipeline_id, number), reason))

    @post("/{number:int}/rerun", status_code=201, opt=requires(Permission.RUN))
    async def rerun(
        self, commands: NamedDependency[RunCommands], pipeline_id: FromPath[UUID], number: FromPath[int]
    ) -> dict[str, Any]:
        """A new run (next number) of a finished run: same pipeline file, branch, commit and metadata."""
        return record_json(await commands.rerun(await commands.find(pipeline_id, number)))

    @post("/{number:int}/stages/{name:str}/retry", status_code=200, opt=requires(Permission.RUN))
    async def retry_stage(
        self,
        commands: NamedDependency[RunCommands],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        name: FromPath[str],
    ) -> dict[str, Any]:
        """Run a failed, timed-out, errored or cancelled stage again (attempt + 1), and what it blocked."""
        return record_json(await commands.retry_stage(await commands.find(pipeline_id, number), name))

    @get("/{number:int}/stages/{name:str}/log", media_type="text/plain")
    async def stage_log(
        self,
        deps: NamedDependency[Deps],
        commands: NamedDependency[RunCommands],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        name: FromPath[str],
        offset: FromQuery[int] = 0,
        attempt: FromQuery[int | None] = None,
    ) -> Response[bytes]:
        """Plain-text log from byte `offset`; `X-Log-Size` and `X-Next-Offset` tell where to continue."""
        run = await commands.find(pipeline_id, number)
        stage = await services.find_stage(run.id, name)
        if stage is None:
            raise NotFound(f"run {number} has no stage '{name}'")
        if offset < 0:
            raise Invalid("'offset' must be >= 0")
        current = stage["attempt"]
        chosen = current if attempt is None else attempt
        if not 1 <= chosen <= current:
            raise NotFound(f"stage '{name}' has attempts 1 to {current}")
        path = deps.logs.find(run.id, name, chosen)
        size = stage["log_size"] if chosen == current else (path.stat().st_size if path.exists() else 0)
        data = deps.logs.read(path, offset, size)
        next_offset = offset + len(data) if offset < size else size
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"X-Log-Size": str(size), "X-Next-Offset": str(next_offset), "X-Attempt": str(chosen)},
        )
