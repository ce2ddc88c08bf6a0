"""Upgrading a database of the version before secrets, with data in it (SQLite and PostgreSQL).

The database is migrated up to the last migration before the secrets ones, filled as that version
filled it (a repository with a plain-text webhook secret and forge token), then opened as a
controller opens it: the remaining migrations apply (on PostgreSQL the webhook secret column
becomes TEXT, so a sealed 128-character secret fits), the first start seals the plain values, and
everything that uses them reads them back.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from controller.db import close_database, engine_from_url, migrate, open_database
from controller.hooks.verify import verify_gitlab
from controller.orgs.services import ensure_default_org_and_tenant
from controller.repos import services as repos
from controller.repos.tables import Repository
from controller.secrets.crypto import is_sealed
from controller.secrets.unlock import unlock
from tests.integration.secrets.rows import legacy_repository

FIRST_SECRETS_MIGRATION = "2026-12-03T10:36:38:552830"


async def test_a_database_from_before_secrets_upgrades_with_its_data(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module (its name is shadowed by the `migrate` function re-exported from controller.db).
    migrate_module = sys.modules["controller.db.migrate"]
    every = migrate_module._migration_modules

    def before_secrets(engine: Any) -> Any:
        return [(mid, module) for mid, module in every(engine) if mid < FIRST_SECRETS_MIGRATION]

    old = engine_from_url(database_url)
    with monkeypatch.context() as patch:
        patch.setattr(migrate_module, "_migration_modules", before_secrets)
        await migrate(old)
    org, tenant = await ensure_default_org_and_tenant()
    webhook_secret = "w" * 128  # the longest the old version accepted
    repo_id = await legacy_repository(org, tenant, webhook_secret, "glpat-plainToken")
    await close_database(old)

    engine = await open_database(database_url)  # the remaining migrations
    try:
        box = await unlock(tmp_path, None)  # the first start of the new version
        row = await Repository.select(Repository.webhook_secret, Repository.status_token).first()
        assert row is not None
        assert is_sealed(row["webhook_secret"]) and len(row["webhook_secret"]) > 128
        assert is_sealed(row["status_token"])
        repo = await repos.get_repository(tenant, repo_id, box)
        assert repo is not None and repo.status_token == "glpat-plainToken"
        assert verify_gitlab(repo.webhook_secret, webhook_secret)
    finally:
        await close_database(engine)
