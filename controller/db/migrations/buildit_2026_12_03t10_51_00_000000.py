"""Composite unique indexes of the identity tables (hand-written: SQLite cannot `ALTER TABLE ... ADD
CONSTRAINT`). NULLs never collide, so a grant is unique per (tenant, user) and per (tenant, team)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T10:51:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "identity unique indexes"

UNIQUE_INDEXES = {
    "membership_org_user_unique": ("membership", ("org", "user")),
    "team_org_name_unique": ("team", ("org", "name")),
    "team_member_team_user_unique": ("team_member", ("team", "user")),
    "tenant_grant_tenant_user_unique": ("tenant_grant", ("tenant", "user")),
    "tenant_grant_tenant_team_unique": ("tenant_grant", ("tenant", "team")),
    "agent_token_org_name_unique": ("agent_token", ("org", "name")),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="buildit", description=DESCRIPTION)

    async def create_indexes() -> None:
        engine = engine_finder()
        assert engine is not None
        for name, (table, columns) in UNIQUE_INDEXES.items():
            column_list = ", ".join(f'"{column}"' for column in columns)
            await engine.run_ddl(f'CREATE UNIQUE INDEX "{name}" ON "{table}" ({column_list})')

    async def drop_indexes() -> None:
        engine = engine_finder()
        assert engine is not None
        for name in UNIQUE_INDEXES:
            await engine.run_ddl(f'DROP INDEX IF EXISTS "{name}"')

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
