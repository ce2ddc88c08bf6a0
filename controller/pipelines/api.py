"""REST: /api/v1/pipelines (list, create, get) and triggering runs of a pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Controller, get, post
from litestar.datastructures import State

from controller.api_errors import error
from controller.pipelines import services
from controller.services import Services


@dataclass
class CreatePipeline:
    """Body of POST /api/v1/pipelines."""

    config: str
    name: str | None = None


class PipelinesController(Controller):
    """Pipelines of the default tenant."""

    path = "/api/v1/pipelines"
    tags = ["pipelines"]

    @get("/")
    async def list_pipelines(self, state: State) -> dict[str, Any]:
        """All pipelines (without their sources)."""
        svc: Services = state.services
        rows = await services.list_pipelines(svc.tenant)
        return {"pipelines": [services.pipeline_json(r, with_config=False) for r in rows]}

    @post("/", status_code=201)
    async def create_pipeline(self, state: State, data: CreatePipeline) -> dict[str, Any]:
        """Store a pipeline; invalid KDL → 422 with every diagnostic, nothing stored."""
        svc: Services = state.services
        if not isinstance(data.config, str) or not data.config.strip():
            raise error(400, "'config' must be the pipeline's KDL source as a non-empty string")
        row = await services.create_pipeline(svc.org, svc.tenant, data.config, data.name)
        return services.pipeline_json(row)

    @get("/{pipeline_id:uuid}")
    async def get_pipeline(self, state: State, pipeline_id: UUID) -> dict[str, Any]:
        """One pipeline with its source."""
        svc: Services = state.services
        row = await services.get_pipeline(svc.tenant, pipeline_id)
        if row is None:
            raise error(404, f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        return services.pipeline_json(row)
