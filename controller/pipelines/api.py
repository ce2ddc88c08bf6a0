"""REST: /api/v1/pipelines (list, create, get) and triggering runs of a pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Invalid, NotFound
from controller.pipelines import services


@dataclass
class CreatePipeline:
    """Body of POST /api/v1/pipelines."""

    config: str
    name: str | None = None


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
        if not isinstance(data.config, str) or not data.config.strip():
            raise Invalid("'config' must be the pipeline's KDL source as a non-empty string")
        row = await services.create_pipeline(deps.org, deps.tenant, data.config, data.name)
        await audit.record("pipeline.create", str(row["name"]), caller=caller, tenant=deps.tenant)
        return services.pipeline_json(row)

    @get("/{pipeline_id:uuid}")
    async def get_pipeline(self, deps: NamedDependency[Deps], pipeline_id: FromPath[UUID]) -> dict[str, Any]:
        """One pipeline with its source."""
        row = await services.get_pipeline(deps.tenant, pipeline_id)
        if row is None:
            raise NotFound(f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        return services.pipeline_json(row)
