"""The unique index of notification deliveries (hand-written: SQLite cannot `ALTER TABLE ... ADD
CONSTRAINT`): one delivery per notification and run finish, however often the finish is seen."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T15:05:23:000000"
VERSION = "1.38.0"
DESCRIPTION = "notification delivery unique index"

UNIQUE_INDEXES = {
    "notification_delivery_dedupe_unique": ("notification_delivery", ("notification", "dedupe_key")),
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
