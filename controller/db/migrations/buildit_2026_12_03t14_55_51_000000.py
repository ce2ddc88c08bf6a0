"""The unique index of pipeline versions (hand-written, as the other index migrations: SQLite cannot
`ALTER TABLE ... ADD CONSTRAINT`). One row per (pipeline, version)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T14:55:51:000000"
VERSION = "1.38.0"
DESCRIPTION = "pipeline version unique index"

UNIQUE_INDEXES = {
    "pipeline_version_pipeline_version_unique": ("pipeline_version", ("pipeline", "version")),
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
