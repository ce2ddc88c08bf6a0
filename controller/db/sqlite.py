"""A Piccolo SQLiteEngine that runs every statement inline, on one connection, on the event loop.

Piccolo's SQLiteEngine goes through aiosqlite: each query is handed to a worker thread and its
answer handed back through `call_soon_threadsafe`, and (outside a transaction) each query opens a
new connection with a new thread. A typical controller statement takes SQLite 20-60 µs; the two
thread hops around it cost about ten times that in CPU, and a stage needs about ten statements.
This engine keeps one `sqlite3` connection and executes each statement synchronously where it is
awaited, which is what SQLite is built for (an embedded library, not a server).

Why this is safe here:

- SQLite statements of the controller are short (indexed single-row reads and writes, bounded
  pages); logs live in files, not in the database. The loop is blocked for microseconds.
- One connection means transactions must not interleave: a transaction takes the engine's
  `asyncio.Lock` for its whole length, and a statement outside any transaction waits for that
  lock only when some other task's transaction holds it (the uncontended path takes no lock and
  never yields). A statement inside a transaction runs on the same connection without waiting
  (Piccolo finds the transaction through its context variable).
- WAL mode (set by `controller.db.engine`) keeps other processes' readers and writers apart;
  a write lock held by another process (only ever during migrations, since one controller owns a
  database) is waited for by SQLite's busy timeout, blocking this loop meanwhile.
- `synchronous=NORMAL` in WAL mode: a commit survives any crash or kill of the controller process
  (the WAL is in the OS page cache before COMMIT returns) but skips the fsync per commit; only an
  operating-system crash or power loss can lose the last transactions. That is the embedded,
  single-machine default; PostgreSQL is the engine for durability against machine failure.

It overrides Piccolo's private `_run_in_new_connection` / `_run_in_existing_connection` and
`get_connection`: Piccolo is pinned below its next major version, and the storage tests cover
these paths on every query they run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory
from piccolo.table import Table

# RETURNING (3.35) lets an INSERT report its primary key in the same statement.
_MIN_VERSION = (3, 35)


class _Cursor:
    """The slice of aiosqlite's Cursor that Piccolo uses, over rows already fetched."""

    def __init__(self, rows: list[Any], lastrowid: int | None, rowcount: int) -> None:
        self.rows = rows
        self.lastrowid = lastrowid
        self.rowcount = rowcount

    async def fetchall(self) -> list[Any]:
        rows, self.rows = self.rows, []
        return rows

    async def fetchone(self) -> Any:
        return self.rows.pop(0) if self.rows else None

    async def close(self) -> None:
        """Nothing is held open: the rows were read when the statement ran."""


class _Statement:
    """What `execute()` returns: awaitable and an async context manager, like aiosqlite's result.

    The statement runs when awaited or entered, not when created, as with aiosqlite.
    """

    def __init__(self, connection: InlineConnection, sql: str, args: Sequence[Any]) -> None:
        self._connection = connection
        self._sql = sql
        self._args = args

    def __await__(self) -> Generator[Any, None, _Cursor]:
        return self.__aenter__().__await__()

    async def __aenter__(self) -> _Cursor:
        return self._connection.run(self._sql, self._args)

    async def __aexit__(self, *_: object) -> None:
        """The cursor holds nothing open."""


class InlineConnection:
    """The engine's one sqlite3 connection, with the aiosqlite-shaped methods Piccolo calls.

    `close()` is a no-op (Piccolo closes a transaction's connection after each transaction; this
    one is shared): `shutdown()` closes it for real.
    """

    def __init__(self, connection_kwargs: dict[str, Any]) -> None:
        # Piccolo's arguments (its type converters, autocommit, our busy timeout). Used from the
        # loop's thread; check_same_thread=False only because Piccolo may run a coroutine through
        # a helper thread (run_sync) while the loop's thread waits for it.
        kwargs = {**connection_kwargs, "isolation_level": None, "check_same_thread": False}
        self._raw = sqlite3.connect(**kwargs)
        self._raw.row_factory = dict_factory
        self._guard = threading.Lock()  # serialises that rare helper-thread use with the loop's
        self.run("PRAGMA foreign_keys = 1", ())
        self.run("PRAGMA synchronous = NORMAL", ())

    @property
    def row_factory(self) -> Any:
        return self._raw.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._raw.row_factory = factory

    def run(self, sql: str, args: Sequence[Any]) -> _Cursor:
        """Execute now and read every row, so no statement is left half-read on the shared connection."""
        with self._guard:
            cursor = self._raw.execute(sql, list(args))
            try:
                rows = cursor.fetchall() if cursor.description is not None else []
                return _Cursor(rows, cursor.lastrowid, cursor.rowcount)
            finally:
                cursor.close()

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> _Statement:
        return _Statement(self, sql, args or ())

    async def commit(self) -> None:
        """Autocommit connection: nothing is pending outside an explicit BEGIN."""

    async def close(self) -> None:
        """Shared connection: kept open (see the class docstring)."""

    def shutdown(self) -> None:
        """Close the sqlite3 connection for real."""
        with self._guard:
            self._raw.close()


class _InlineTransaction(SQLiteTransaction):
    """A Piccolo transaction holding the engine's lock from BEGIN to COMMIT/ROLLBACK."""

    engine: InlineSQLiteEngine

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return await super().__aenter__()
        lock = self.engine.lock()
        await lock.acquire()
        self._held = lock
        try:
            return await super().__aenter__()
        except BaseException:
            lock.release()
            raise

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self._parent is not None:
            return await super().__aexit__(exception_type, exception, traceback)
        try:
            return await super().__aexit__(exception_type, exception, traceback)
        finally:
            self._held.release()


class InlineSQLiteEngine(SQLiteEngine):
    """SQLiteEngine on one connection, statements run inline (see the module docstring)."""

    def __init__(self, path: str, **connection_kwargs: Any) -> None:
        self._connection: InlineConnection | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        super().__init__(path=path, **connection_kwargs)
        if sqlite3.sqlite_version_info[:2] < _MIN_VERSION:
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} is too old for BuildIt: it needs 3.35 or newer "
                "(RETURNING); use a newer Python build or PostgreSQL"
            )

    def connection(self) -> InlineConnection:
        """The shared connection, opened on first use (and again after `shutdown()`)."""
        if self._connection is None:
            self._connection = InlineConnection(self.connection_kwargs)
        return self._connection

    def lock(self) -> asyncio.Lock:
        """The transaction lock of the running loop (an asyncio.Lock belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def get_connection(self) -> InlineConnection:  # type: ignore[override]
        """Transactions use the shared connection too (they hold the lock meanwhile)."""
        return self.connection()

    def transaction(
        self, transaction_type: TransactionType = TransactionType.deferred, allow_nested: bool = True
    ) -> SQLiteTransaction:
        return _InlineTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)

    async def _run_in_new_connection(
        self,
        query: str,
        args: Sequence[Any] | None = None,
        query_type: str = "generic",
        table: type[Table] | None = None,
    ) -> Any:
        lock = self.lock()
        if lock.locked():  # another task's transaction is open on the connection: wait for its end
            async with lock:
                return self.connection().run(query, args or ()).rows
        return self.connection().run(query, args or ()).rows

    async def _run_in_existing_connection(
        self,
        connection: Any,
        query: str,
        args: Sequence[Any] | None = None,
        query_type: str = "generic",
        table: type[Table] | None = None,
    ) -> Any:
        return self.connection().run(query, args or ()).rows

    async def run_sql(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        """Run one SQLite statement (`?` placeholders) without Piccolo's query building.

        For `controller.db.statements`: inside a transaction it joins it, otherwise it waits for
        another task's open transaction as every other statement does.
        """
        if self.current_transaction.get() is not None:
            return self.connection().run(sql, args).rows
        rows: list[dict[str, Any]] = await self._run_in_new_connection(sql, args)
        return rows

    async def shutdown(self) -> None:
        """Close the connection (the engine stays usable: the next statement opens a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._lock is not None and self._lock_loop is asyncio.get_running_loop():
                async with self._lock:  # let an open transaction finish first
                    connection.shutdown()
            else:
                connection.shutdown()
