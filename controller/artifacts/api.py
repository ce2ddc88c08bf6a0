"""REST: the artifacts of a run — list them, download one.

Artifacts live under their run (`/api/v1/pipelines/{id}/runs/{number}/artifacts`), scoped to the
tenant like the runs API. Downloads stream the stored file as an attachment named after the
artifact's base name.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import File

from controller.artifacts import services
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import BuildItError, NotFound
from controller.pipelines.services import get_pipeline
from controller.runs.services import find_run

MAX_NUMBER = 2**31 - 1


class ArtifactsController(Controller):
    """A run's artifacts: `GET .../artifacts` and `GET .../artifacts/{id}`."""

    path = "/api/v1/pipelines/{pipeline_id:uuid}/runs/{number:int}/artifacts"
    opt = requires(Permission.READ)
    tags = ["artifacts"]

    async def _run(self, deps: Deps, pipeline_id: UUID, number: int) -> dict[str, Any]:
        if await get_pipeline(deps.tenant, pipeline_id) is None:
            raise NotFound(f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        row = await find_run(pipeline_id, number) if 1 <= number <= MAX_NUMBER else None
        if row is None:
            raise NotFound(f"run {number} of pipeline {pipeline_id} not found")
        return row

    @get("/")
    async def list_artifacts(
        self, deps: NamedDependency[Deps], pipeline_id: FromPath[UUID], number: FromPath[int]
    ) -> dict[str, Any]:
        """Every artifact of the run: stage, path, size, sha256, and where to download it."""
        run = await self._run(deps, pipeline_id, number)
        base = f"/api/v1/pipelines/{pipeline_id}/runs/{number}/artifacts"
        rows = await services.list_for_run(deps.tenant, run["id"])
        return {"artifacts": [services.artifact_json(row, f"{base}/{row['id']}") for row in rows]}

    @get("/{artifact_id:uuid}", media_type="application/octet-stream")
    async def download(
        self,
        deps: NamedDependency[Deps],
        pipeline_id: FromPath[UUID],
        number: FromPath[int],
        artifact_id: FromPath[UUID],
    ) -> File:
        """The artifact's bytes, as an attachment named after its file name."""
        run = await self._run(deps, pipeline_id, number)
        row = await services.find_artifact(deps.tenant, run["id"], artifact_id)
        if row is None:
            raise NotFound(
                f"run {number} of pipeline {pipeline_id} has no artifact {artifact_id}; list them with "
                f"GET /api/v1/pipelines/{pipeline_id}/runs/{number}/artifacts",
            )
        store = deps.artifacts
        if store is None or not store.exists(str(row["sha256"])):
            raise BuildItError(
                f"the content of artifact '{row['path']}' ({row['sha256']}) is missing from the controller's "
                "data dir",
            )
        return File(
            path=store.path(str(row["sha256"])),
            filename=PurePosixPath(str(row["path"])).name,
            media_type="application/octet-stream",
            content_disposition_type="attachment",
        )
