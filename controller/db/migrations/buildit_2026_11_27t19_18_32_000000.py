"""Composite unique indexes of the repository and artifact tables (hand-written, as in the first
index migration: SQLite cannot `ALTER TABLE ... ADD CONSTRAINT`)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-27T19:18:32:000000"
VERSION = "1.38.0"
DESCRIPTION = "repository and artifact unique indexes"

UNIQUE_INDEXES = {
    "repository_tenant_name_unique": ("repository", ("tenant", "name")),
    "branch_head_repository_branch_unique": ("branch_head", ("repository", "branch")),
    "commit_trigger_repository_dedupe_unique": ("commit_trigger", ("repository", "dedupe_key")),
    "artifact_stage_run_path_unique": ("artifact", ("stage_run", "path")),
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
