"""A Piccolo SQLiteEngine that keeps its connections open between queries.

Piccolo's SQLiteEngine opens a new aiosqlite connection for every query outside a transaction:
a new thread and a new SQLite handle, then both thrown away. That costs about 1.5 ms of CPU per
query, which alone would eat the controller's per-stage budget on the embedded default database.
This engine keeps up to `IDLE_CONNECTIONS` connections open and hands each query one of its own
(never shares one between two queries in flight), so a query waiting for the write lock holds up
only itself. Connections are in autocommit mode, as Piccolo opens them (`isolation_level=None`),
so an idle connection holds no snapshot and no lock. Transactions keep Piccolo's behaviour (a
connection of their own for the transaction's length).

It overrides Piccolo's private `_run_in_new_connection` (and sets aiosqlite's worker thread to
daemon): both libraries are pinned below their next major version, and the storage tests cover
this path on every query they run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from piccolo.engine.sqlite import SQLiteEngine, dict_factory
from piccolo.table import Table

IDLE_CONNECTIONS = 4

# RETURNING (3.35) lets an INSERT report its primary key in the same statement; Piccolo's older
# path re-reads it by ROWID, and is left to Piccolo.
_MIN_VERSION_FOR_REUSE = 3.35


async def _configure(connection: aiosqlite.Connection) -> None:
    """Per-connection settings.

    `synchronous=NORMAL` in WAL mode: a commit survives any crash or kill of the controller process
    (the WAL is in the OS page cache before COMMIT returns) but skips the fsync per commit; only an
    operating-system crash or power loss can lose the last transactions. That is the embedded,
    single-machine default; PostgreSQL is the engine for durability against machine failure.
    """
    await connection.execute("PRAGMA foreign_keys = 1")
    await connection.execute("PRAGMA synchronous = NORMAL")


class ReusingSQLiteEngine(SQLiteEngine):
    """SQLiteEngine with a small set of idle connections reused across queries (see module docstring)."""

    def __init__(self, path: str, **connection_kwargs: Any) -> None:
        self._idle: list[aiosqlite.Connection] = []
        super().__init__(path=path, **connection_kwargs)

    async def _open(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(**self.connection_kwargs)
        # aiosqlite's worker thread is not a daemon: an idle connection left open would keep the
        # interpreter from exiting (threads are joined before atexit handlers could close it).
        connection._thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]  # aiosqlite types it too narrowly
        await _configure(connection)
        return connection

    async def get_connection(self) -> aiosqlite.Connection:
        """Connections for transactions: configured like the pooled ones."""
        connection = await aiosqlite.connect(**self.connection_kwargs)
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await _configure(connection)
        return connection

    async def _run_in_new_connection(
        self,
        query: str,
        args: Sequence[Any] | None = None,
        query_type: str = "generic",
        table: type[Table] | None = None,
    ) -> Any:
        if self.get_version_sync() < _MIN_VERSION_FOR_REUSE:
            return await super()._run_in_new_connection(query, list(args or []), query_type, table)
        connection = self._idle.pop() if self._idle else await self._open()
        try:
            async with connection.execute(query, list(args or [])) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.Error:
            self._release(connection)  # a failed statement leaves an autocommit connection usable
            raise
        except BaseException:
            await connection.close()  # cancelled mid-statement: do not reuse what state it is in
            raise
        self._release(connection)
        return rows

    def _release(self, connection: aiosqlite.Connection) -> None:
        if len(self._idle) < IDLE_CONNECTIONS:
            self._idle.append(connection)
        else:
            connection.stop()  # closes in the worker thread; nothing to wait for

    async def close_idle_connections(self) -> None:
        """Close the kept connections (the engine stays usable: it opens new ones as needed)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
