"""Applying BuildIt's Piccolo migrations at start: idempotent, and safe for concurrent starters.

`buildit up` and `buildit controller` call `migrate()` (through `open_database()`) on every start,
and several controller replicas may start at once against one PostgreSQL. So:

- migrations run under a database-wide lock: a PostgreSQL advisory lock, or for SQLite an
  exclusive `flock` on `<database file>.migrate-lock` beside the database;
- each migration and the row recording it in Piccolo's `migration` table commit in one
  transaction (DDL is transactional in SQLite and PostgreSQL), so a crash never leaves a migration
  applied but unrecorded;
- with the lock held, already recorded migrations are skipped: a second call is a no-op.

The bookkeeping table is Piccolo's own (`migration`, app name "buildit"), so the `piccolo` CLI
(`piccolo migrations check|forwards|backwards buildit`) sees the same history.

Adding a migration
------------------
1. Change or add a table in `controller/<domain>/tables.py` (a new table is also listed in
   `controller/tables.py`).
2. From the repository root, generate the migration from the difference between the tables and
   the existing migration files (the schema is not read from a database):

       PICCOLO_CONF=controller.db.piccolo_conf .venv/bin/piccolo migrations new buildit --auto \\
           --desc="what changed"

   Write `--desc="..."` with the `=`: Piccolo's CLI turns `--desc "..."` into the description
   "True". It warns that auto migrations are not fully supported by SQLite: adding, dropping and
   renaming columns and tables works on both engines, but SQLite has no ALTER COLUMN, so a
   changed column type, nullability or default needs a hand-written migration for SQLite
   (rebuild the table). The storage tests apply every migration to both engines.
3. Read the new file under `controller/db/migrations/` and commit it (the folder is excluded
   from ruff and mypy as generated code). It is applied on the next start of the controller (or
   by `migrate()` in the tests); `test_migrations_match_the_tables` fails until it exists.

Not expressible as table attributes, so written by hand (`piccolo migrations new buildit
--desc="..."` makes an empty migration with a fresh ID, to be filled with `manager.add_raw`):
data changes, and multi-column uniqueness. Piccolo's `Unique([...])` constraint is created with
`ALTER TABLE ... ADD CONSTRAINT`, which SQLite lacks, so BuildIt's composite unique rules are
`CREATE UNIQUE INDEX` statements in a migration (see the second one) and comments on the tables.
Raw steps run before the migration's table operations, so they go in a migration of their own
when they need its tables. Keep every migration transactional (no `CREATE INDEX CONCURRENTLY`):
the runner commits a migration together with its record.

`piccolo_conf.py` reads `BUILDIT_DATABASE_URL` (default: `buildit.db` in `BUILDIT_DATA_DIR`, else
in `.buildit`) for the commands that need a database, such as `piccolo migrations check buildit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import io
import logging
import os
import pkgutil
import zlib
from collections.abc import AsyncIterator
from typing import cast

from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import MigrationModule
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.table import Table

from controller.db import migrations as migrations_package
from controller.db.binding import APP_NAME, AnyEngine, bind

log = logging.getLogger(__name__)

# One arbitrary, fixed 32-bit key for pg_advisory_lock, shared by every BuildIt process.
_PG_LOCK_KEY = zlib.crc32(b"buildit.migrate")
# How often a process waiting for another's SQLite migration lock looks again (start-up only).
_SQLITE_LOCK_RETRY_S = 0.02


async def migrate(engine: AnyEngine) -> list[str]:
    """Apply every pending migration to `engine` (binding it); returns the IDs applied, oldest first.

    Calling it again, or from several processes at once, is safe: the late comers find nothing
    to do.
    """
    bind(engine)  # Piccolo's MigrationManager finds its engine through piccolo_conf.
    applied: list[str] = []
    async with _migration_lock(engine):
        await Migration.create_table(if_not_exists=True)
        done = set(await Migration.get_migrations_which_ran(app_name=APP_NAME))
        for migration_id, module in _migration_modules(engine):
            if migration_id in done:
                continue
            manager = await module.forwards()
            async with engine.transaction():
                # MigrationManager.run() prints progress to stdout; BuildIt logs instead.
                with contextlib.redirect_stdout(io.StringIO()):
                    await manager.run()
                await Migration.insert(Migration(name=migration_id, app_name=APP_NAME))
            log.info("applied database migration %s", migration_id)
            applied.append(migration_id)
    return applied


def _migration_modules(engine: AnyEngine) -> list[tuple[str, MigrationModule]]:
    """The migration modules of `controller/db/migrations/`, sorted by their ID (a timestamp).

    Imported as submodules of the package (Piccolo's own loader puts the folder on sys.path).
    Table classes a migration file declares for its foreign keys cache the engine they first
    ran with; they are pointed at `engine`, in case this process migrated another database before.
    """
    found: list[tuple[str, MigrationModule]] = []
    for info in pkgutil.iter_modules(migrations_package.__path__):
        module = importlib.import_module(f"{migrations_package.__name__}.{info.name}")
        migration_id = getattr(module, "ID", None)
        if not isinstance(migration_id, str):
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Table) and value is not Table:
                value._meta.db = engine
        found.append((migration_id, cast(MigrationModule, module)))
    return sorted(found, key=lambda item: item[0])


@contextlib.asynccontextmanager
async def _migration_lock(engine: AnyEngine) -> AsyncIterator[None]:
    """Hold the database-wide migration lock of `engine` for the duration of the block."""
    if isinstance(engine, PostgresEngine):
        # A connection of its own: the advisory lock lives as long as this session, while the
        # migration runs on the pool's connections. Closing the connection also releases it.
        connection = await engine.get_new_connection()
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", _PG_LOCK_KEY)
            try:
                yield
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _PG_LOCK_KEY)
        finally:
            await connection.close()
    elif isinstance(engine, SQLiteEngine):
        fd = os.open(f"{engine.path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Non-blocking attempts, so waiting never blocks the event loop (two tasks of one
            # process contend too: flock locks belong to each open file description).
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(_SQLITE_LOCK_RETRY_S)
            yield  # closing the descriptor below releases the lock
        finally:
            os.close(fd)
    else:
        raise TypeError(f"unsupported engine {type(engine).__name__}: BuildIt runs on SQLite or PostgreSQL")
