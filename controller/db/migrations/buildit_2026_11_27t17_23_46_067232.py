"""Composite unique indexes (hand-written; Piccolo's auto migrations do not cover them).

Piccolo's `Unique([...])` table constraint is created with `ALTER TABLE ... ADD CONSTRAINT`, which
SQLite does not support, so the multi-column uniqueness rules are unique indexes made here with SQL
that SQLite and PostgreSQL both accept. `INSERT ... ON CONFLICT (columns)` works with them on
both engines (use a column list, not `ON CONSTRAINT name`).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T17:23:46:067232"
VERSION = "1.38.0"
DESCRIPTION = "composite unique indexes"

UNIQUE_INDEXES = {
    "tenant_org_slug_unique": ("tenant", ("org", "slug")),
    "pipeline_tenant_name_unique": ("pipeline", ("tenant", "name")),
    "agent_tenant_name_unique": ("agent", ("tenant", "name")),
    "run_pipeline_number_unique": ("run", ("pipeline", "number")),
    "stage_run_run_name_unique": ("stage_run", ("run", "name")),
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
