"""REST: /api/v1/pipelines — list, create, get, edit, delete, and the versions of a pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import NotFound
from controller.pipelines import services
from controller.pipelines.commands import PipelineCommands


@dataclass
class CreatePipeline:
    """Body of POST /api/v1/pipelines."""

    config: str
    name: str | None = None


@dataclass
class EditPipeline:
    """Body of PUT /api/v1/pipelines/{id}: the new file. Optional here so that a missing file is
    told apart from a pipeline that does not exist (which answers 404 first)."""

    config: str | None = None


def pipeline_commands(deps: Deps, caller: Caller | None) -> PipelineCommands:
    """The pipeline operations acting for `caller` in its tenant (the doors' one way to them)."""
    return PipelineCommands(deps.scheduler, deps.logs, deps.artifacts, deps.org, deps.tenant, caller)


class PipelinesController(Controller):
    """Pipelines of the caller's tenant."""

    path = "/api/v1/pipelines"
    opt = requires(Permission.READ)
    tags = ["pipelines"]

    @get("/")
    async def list_pipelines(self, deps: NamedDependency[Deps]) -> dict[str, Any]:
        """All pipelines (without their sources)."""
        rows = await services.list_pipelines(deps.tenant)
        return {"pipelines": [services.pipeline_json(r, with_config=False) for r in rows]}

    @post("/", status_code=201, opt=requires(Permission.MANAGE))
    async def create_pipeline(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], data: JSONBody[CreatePipeline]
    ) -> dict[str, Any]:
        """Store a pipeline; invalid KDL → 422 with every diagnostic, nothing stored."""
        row = await pipeline_commands(deps, caller).create(data.config, data.name)
        return services.pipeline_json(row)

    @get("/{pipeline_id:uuid}")
    async def get_pipeline(self, deps: NamedDependency[Deps], pipeline_id: FromPath[UUID]) -> dict[str, Any]:
        """One pipeline with its source."""
        row = await services.get_pipeline(deps.tenant, pipeline_id)
        if row is None:
            raise NotFound(f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        return services.pipeline_json(row)

    @put("/{pipeline_id:uuid}", opt=requires(Permission.MANAGE))
    async def edit_pipeline(
        self,
        deps: NamedDependency[Deps],
        caller: NamedDependency[Caller],
        pipeline_id: FromPath[UUID],
        data: JSONBody[EditPipeline],
    ) -> dict[str, Any]:
        """Replace the pipeline's file (its next version); invalid KDL → 422 with every diagnostic,
        nothing changed; a watched repository's pipeline → 409 (push a commit instead)."""
        commands = pipeline_commands(deps, caller)
        edited = await commands.edit(await commands.get(pipeline_id), data.config)
        return {**services.pipeline_json(edited.row), "changed": edited.changed}

    @delete("/{pipeline_id:uuid}", status_code=204, opt=requires(Permission.MANAGE))
    async def delete_pipeline(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], pipeline_id: FromPath[UUID]
    ) -> None:
        """Delete the pipeline with its runs, logs and artifacts (running runs are cancelled first)."""
        commands = pipeline_commands(deps, caller)
        await commands.delete(await commands.get(pipeline_id))

    @get("/{pipeline_id:uuid}/versions")
    async def list_versions(self, deps: NamedDependency[Deps], pipeline_id: FromPath[UUID]) -> dict[str, Any]:
        """The files the pipeline has had, newest first (version, who, when; a commit for a
        repository's pipeline)."""
        row = await pipeline_commands(deps, None).get(pipeline_id)
        return {"version": row.get("version", 1), "versions": await services.versions(row)}

    @get("/{pipeline_id:uuid}/versions/{version:int}")
    async def get_version(
        self, deps: NamedDependency[Deps], pipeline_id: FromPath[UUID], version: FromPath[int]
    ) -> dict[str, Any]:
        """One version's file."""
        row = await pipeline_commands(deps, None).get(pipeline_id)
        config = await services.version_config(row, version) if 1 <= version < 2**31 else None
        if config is None:
            raise NotFound(
                f"pipeline {pipeline_id} has no version {version}; list them with GET .../versions"
            )
        return {"version": version, "config": config}
