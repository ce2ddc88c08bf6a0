"""Upgrading a database of the version before accounts, with data in it (SQLite and PostgreSQL).

The database is migrated up to the last migration before the identity ones and filled as that
version filled it: a pipeline with a finished run and its stage, and an agent registered with the
old single registration token (its row has no `org_wide` column yet). Then a real controller of
this version starts on it: the remaining migrations apply, the first admin is created, and the old
data is there, in org `default`, tenant `default`, for the admin; a new tenant sees none of it; the
old agent keeps serving every tenant of the organization.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.agents.tables import Agent
from controller.db import close_database, engine_from_url, migrate
from controller.orgs.services import ensure_default_org_and_tenant
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run, StageRun
from tests.integration.fleet.harness import Controller
from tests.support.old_schema import existing_columns, insert_old

FIRST_IDENTITY_MIGRATION = "2026-12-03T10:50:29:366730"
CONFIG = 'pipeline "legacy-app"\nstage "build" { run "make"; }\n'


async def _old_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The schema and rows of the version before accounts."""
    migrate_module = sys.modules["controller.db.migrate"]
    every = migrate_module._migration_modules

    def before_identity(engine: Any) -> Any:
        return [(mid, module) for mid, module in every(engine) if mid < FIRST_IDENTITY_MIGRATION]

    engine = engine_from_url(database_url)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(migrate_module, "_migration_modules", before_identity)
            await migrate(engine)
        columns = await existing_columns(Agent)
        assert "org_wide" not in columns, "the old schema already has the identity columns"
        org, tenant = await ensure_default_org_and_tenant()
        now = datetime.now(UTC)
        pipeline_id, run_id, agent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # Written as the old version did: only the columns its schema has (later ones add more).
        await insert_old(
            Pipeline(
                id=pipeline_id,
                org=org,
                tenant=tenant,
                name="legacy-app",
                config=CONFIG,
                next_run_number=2,
                created_at=now,
                updated_at=now,
            )
        )
        await insert_old(
            Run(
                id=run_id,
                org=org,
                tenant=tenant,
                pipeline=pipeline_id,
                number=1,
                status="succeeded",
                branch="main",
                sha="a" * 40,
                commit_message="legacy",
                author="old",
                trigger="manual",
                created_at=now,
                started_at=now,
                finished_at=now,
                pipeline_source=CONFIG,
            )
        )
        await insert_old(
            StageRun(
                id=uuid.uuid4(),
                org=org,
                tenant=tenant,
                run=run_id,
                name="build",
                index=0,
                status="succeeded",
                executor="local",
            )
        )
        await insert_old(  # no org_wide column yet
            Agent(
                id=agent_id,
                org=org,
                tenant=tenant,
                name="old-agent",
                token_hash="f" * 64,
                labels={},
                executors=["local"],
                capacity=1,
                version="0.1",
                status="offline",
                registered_at=now,
            )
        )
        return {"pipeline": str(pipeline_id), "run": str(run_id), "agent": str(agent_id)}
    finally:
        await close_database(engine)


def test_a_database_from_before_accounts_upgrades_with_its_data(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = asyncio.run(_old_database(database_url, monkeypatch))
    controller = Controller(tmp_path, database_url).start()  # migrates, creates the first admin
    try:
        status, pipelines, _ = controller.request("GET", "/api/v1/pipelines")
        assert status == 200, pipelines
        names = {p["name"]: p for p in pipelines["pipelines"]}
        assert "legacy-app" in names and str(names["legacy-app"]["id"]) == old["pipeline"]
        status, run, _ = controller.request("GET", f"/api/v1/pipelines/{old['pipeline']}/runs/1")
        assert status == 200, run
        assert run["status"] == "succeeded" and [s["name"] for s in run["stages"]] == ["build"]
        # A pipeline from before versions is version 1, and keeps that file when first edited.
        path = f"/api/v1/pipelines/{old['pipeline']}"
        status, history, _ = controller.request("GET", f"{path}/versions")
        assert status == 200 and [v["version"] for v in history["versions"]] == [1], history
        edited = CONFIG.replace("make", "make all")
        status, body, _ = controller.request("PUT", path, {"config": edited})
        assert status == 200 and (body["version"], body["config"]) == (2, edited), body
        status, first, _ = controller.request("GET", f"{path}/versions/1")
        assert status == 200 and first["config"] == CONFIG, first

        status, agents, _ = controller.request("GET", "/api/v1/agents")
        assert status == 200, agents
        assert [a["name"] for a in agents["agents"] if str(a["id"]) == old["agent"]] == ["old-agent"], agents

        # A new tenant holds none of the old data; the old agent still serves it (org-wide).
        status, body, _ = controller.request("POST", "/api/v1/tenants", {"slug": "fresh"})
        assert status == 201, body
        fresh = {"X-BuildIt-Tenant": "default/fresh"}
        status, there, _ = controller.request("GET", "/api/v1/pipelines", headers=fresh)
        assert status == 200 and "legacy-app" not in str(there), there
        status, body, _ = controller.request("GET", f"/api/v1/pipelines/{old['pipeline']}", headers=fresh)
        assert status == 404, body
    finally:
        controller.stop()
    assert asyncio.run(_org_wide(database_url, old["agent"])) is True


async def _org_wide(database_url: str, agent_id: str) -> bool:
    engine = engine_from_url(database_url)
    try:
        row = await Agent.select(Agent.org_wide).where(Agent.id == uuid.UUID(agent_id)).first()
        assert row is not None
        return bool(row["org_wide"])
    finally:
        await close_database(engine)
