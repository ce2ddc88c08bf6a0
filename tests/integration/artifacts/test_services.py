"""The artifact index (controller.artifacts.services) on real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from agent.contract.types import StageSpec, StageStatus
from controller.artifacts import services
from controller.artifacts.tables import Artifact
from controller.orgs.services import ensure_default_org_and_tenant
from controller.pipelines.services import create_pipeline
from controller.scheduling.db_store import PiccoloStore
from controller.scheduling.model import RunState, StageState
from controller.scheduling.ports import NewRun


async def make_run(*stage_names: str) -> tuple[UUID, UUID, UUID, dict[str, UUID]]:
    """(org, tenant, run id, stage name -> stage_run id) of a fresh run with those stages."""
    org, tenant = await ensure_default_org_and_tenant()
    config = 'pipeline "p"\n' + "".join(f'stage "{n}" {{ run "true"; }}\n' for n in stage_names)
    pipeline = await create_pipeline(org, tenant, config, f"p-{uuid.uuid4().hex[:8]}")
    store = PiccoloStore(org, tenant)
    number = await store.next_run_number(pipeline["id"])
    assert number is not None
    run = RunState(id=uuid.uuid4(), pipeline_id=pipeline["id"], number=number, status=StageStatus.QUEUED)
    for index, name in enumerate(stage_names):
        run.stages[name] = StageState(
            id=uuid.uuid4(),
            run_id=run.id,
            name=name,
            index=index,
            status=StageStatus.QUEUED,
            spec=StageSpec(name=name, index=index, commands=("true",)),
            needs=(),
            executor="local",
            labels={},
        )
    await store.insert_run(NewRun(run, pipeline["id"], "main", "", "", "", "api"))
    return org, tenant, run.id, {name: s.id for name, s in run.stages.items()}


async def record(
    org: UUID, tenant: UUID, run: UUID, stage_id: UUID, stage: str, path: str, size: int
) -> UUID:
    return await services.record_artifact(
        org=org,
        tenant=tenant,
        run_id=run,
        stage_run_id=stage_id,
        stage=stage,
        path=path,
        sha256=f"{size:064x}",
        size=size,
    )


async def test_a_path_uploaded_again_replaces_its_row(db: Any) -> None:
    org, tenant, run, stages = await make_run("build")
    await record(org, tenant, run, stages["build"], "build", "dist/a.txt", 3)
    await record(org, tenant, run, stages["build"], "build", "dist/b.txt", 5)
    replaced = await record(org, tenant, run, stages["build"], "build", "dist/a.txt", 7)
    rows = await services.list_for_run(tenant, run)
    assert [(r["path"], r["size"]) for r in rows] == [("dist/a.txt", 7), ("dist/b.txt", 5)]
    assert rows[0]["id"] == replaced
    assert await services.stage_bytes(stages["build"]) == 12
    assert await services.stage_bytes(stages["build"], except_path="dist/a.txt") == 5


async def test_stage_artifacts_come_in_needs_order_then_by_path(db: Any) -> None:
    org, tenant, run, stages = await make_run("a", "b", "c")
    await record(org, tenant, run, stages["a"], "a", "z.txt", 1)
    await record(org, tenant, run, stages["a"], "a", "y.txt", 1)
    await record(org, tenant, run, stages["b"], "b", "x.txt", 1)
    await record(org, tenant, run, stages["c"], "c", "w.txt", 1)
    rows = await services.list_for_stages(run, ("b", "a"))
    assert [(r["stage"], r["path"]) for r in rows] == [("b", "x.txt"), ("a", "y.txt"), ("a", "z.txt")]
    assert await services.list_for_stages(run, ()) == []


async def test_other_runs_and_tenants_see_nothing(db: Any) -> None:
    org, tenant, run, stages = await make_run("build")
    _, _, other_run, _ = await make_run("build")
    artifact = await record(org, tenant, run, stages["build"], "build", "a.txt", 1)
    assert await services.list_for_run(tenant, other_run) == []
    assert await services.list_for_run(uuid.uuid4(), run) == []
    assert await services.find_artifact(tenant, other_run, artifact) is None
    assert await services.find_artifact(uuid.uuid4(), run, artifact) is None
    found = await services.find_artifact(tenant, run, artifact)
    assert found is not None and found["path"] == "a.txt"


async def test_forgetting_earlier_attempts_keeps_what_came_after_the_cut(db: Any) -> None:
    org, tenant, run, stages = await make_run("build")
    await record(org, tenant, run, stages["build"], "build", "old-only.txt", 1)
    await record(org, tenant, run, stages["build"], "build", "both.txt", 1)
    cut = datetime.now(UTC)
    await Artifact.update({Artifact.created_at: cut - timedelta(seconds=1)}).where(
        Artifact.stage_run == stages["build"]
    )
    await record(
        org, tenant, run, stages["build"], "build", "both.txt", 2
    )  # the new attempt's, after the cut
    await services.forget_earlier_attempts(stages["build"], cut)
    rows = await services.list_for_run(tenant, run)
    assert [(r["path"], r["size"]) for r in rows] == [("both.txt", 2)]


async def test_forgetting_a_stage_drops_all_its_rows_only(db: Any) -> None:
    org, tenant, run, stages = await make_run("a", "b")
    await record(org, tenant, run, stages["a"], "a", "1.txt", 1)
    await record(org, tenant, run, stages["b"], "b", "2.txt", 1)
    await services.forget_stage(stages["a"])
    assert [r["stage"] for r in await services.list_for_run(tenant, run)] == ["b"]


def test_artifact_json_shape() -> None:
    row = {
        "id": uuid.UUID(int=1),
        "stage": "build",
        "path": "dist/a.txt",
        "size": 3,
        "sha256": "f" * 64,
        "created_at": datetime(2026, 1, 2, tzinfo=UTC),
    }
    assert services.artifact_json(row, "/x") == {
        "id": str(uuid.UUID(int=1)),
        "stage": "build",
        "path": "dist/a.txt",
        "size": 3,
        "sha256": "f" * 64,
        "created_at": "2026-01-02T00:00:00+00:00",
        "download_url": "/x",
    }
