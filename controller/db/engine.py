"""Turning a database URL into a Piccolo engine, and opening / closing the database.

Accepted URLs (the `BUILDIT_DATABASE_URL` forms):

- `sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (the SQLAlchemy convention:
  the path is what follows `sqlite:///`, so `f"sqlite:///{path}"` works for either kind). Parent
  directories are created. The file is switched to WAL journal mode and the connection waits up
  to `SQLITE_BUSY_TIMEOUT_S` for a lock another process holds (concurrently starting processes
  migrating), instead of failing with "database is locked". One process uses one connection and
  runs statements inline on its event loop (controller.db.sqlite). The file (and its `-wal`,
  `-shm` and migration-lock companions) is private to its owner (mode 0600): it holds sealed
  secrets and metadata nobody else on the machine should read.
- `postgresql://user:password@host:port/database` (`postgres://` works too; query parameters such
  as `sslmode` are passed to asyncpg). Sessions carry an `application_name` saying which BuildIt
  process opened them (`buildit-controller`, or `buildit-admin` for offline maintenance), so
  maintenance can tell whether a controller is connected (`controller_sessions`).

Constructing an engine does no network I/O; `open_database()` connects, migrates and starts the
PostgreSQL connection pool.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from controller.db.binding import AnyEngine
from controller.db.migrate import migrate
from controller.db.sqlite import InlineSQLiteEngine

SQLITE_BUSY_TIMEOUT_S = 30.0
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10

#: The PostgreSQL `application_name` of a controller's sessions, and of offline maintenance's.
CONTROLLER_APPLICATION = "buildit-controller"
ADMIN_APPLICATION = "buildit-admin"

ACCEPTED_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "or postgresql://user:password@host:port/database (postgres:// works too)"
)


class DatabaseUnavailable(RuntimeError):
    """The database server cannot be reached or refuses us (message names the URL, never a password)."""


class _PostgresEngine(PostgresEngine):
    """A PostgresEngine whose constructor stays off the network.

    Piccolo's `Engine.__init__` runs `check_version()` and `prep_database()` synchronously: for
    PostgreSQL that is a blocking connection (in a helper thread when an event loop is running),
    and an unreachable server only prints a warning. BuildIt connects in `open_database()`
    instead, where failing is an exception. No extensions are needed (UUIDs come from
    `gen_random_uuid()`, built into PostgreSQL 13+), so `prep_database` has nothing to do.
    """

    async def check_version(self) -> None:
        """Skipped at construction; `open_database()` is where the server is first reached."""

    async def prep_database(self) -> None:
        """Nothing to prepare: BuildIt needs no PostgreSQL extension."""


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs.

    Matches up to the last `@`, so a password that itself contains `@` is hidden whole (the URL
    may be malformed: this must not rely on parsing it).
    """
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)


def _bad_url(url: str, problem: str) -> ValueError:
    return ValueError(f"invalid database URL {redact_url(url)!r}: {problem}; use {ACCEPTED_FORMS}")


def engine_from_url(url: str, application: str = CONTROLLER_APPLICATION) -> AnyEngine:
    """A Piccolo engine for `url` (see the module docstring); ValueError names the accepted forms.

    `application` names the process on PostgreSQL sessions (`application_name`).
    """
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return _sqlite_engine(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres_engine(url, application)
    raise _bad_url(url, f"unsupported scheme {scheme!r}" if scheme else "not a URL")


def _sqlite_engine(url: str) -> SQLiteEngine:
    parts = urlsplit(url)
    if parts.netloc:
        raise _bad_url(url, "a SQLite URL has no host: write three slashes before the path")
    if parts.query or parts.fragment:
        raise _bad_url(url, "a SQLite URL takes no ?query or #fragment")
    path = unquote(parts.path[1:])  # the one "/" after "sqlite://" separates, the rest is the path
    if not path:
        raise _bad_url(url, "the SQLite file path is missing")
    if path == ":memory:":
        # Queries and transactions use several connections: each would see its own empty database.
        raise _bad_url(url, "in-memory SQLite is not supported, give a file path")
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    _make_private(file)
    _enable_wal(file)
    return InlineSQLiteEngine(path=str(file), timeout=SQLITE_BUSY_TIMEOUT_S)


#: The files SQLite keeps beside a database (its write-ahead log, shared memory index) and ours.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal", ".migrate-lock")


def _make_private(file: Path) -> None:
    """Create the database file with mode 0600, or take group and world access off an existing one.

    SQLite creates its `-wal` and `-shm` files with the mode of the database file, so a new
    database stays private; files of an older installation are fixed here, once per open.
    """
    os.close(os.open(file, os.O_RDWR | os.O_CREAT, 0o600))
    for path in (file, *(file.with_name(file.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            path.chmod(mode & 0o700)


def _enable_wal(file: Path) -> None:
    """Switch the database file to WAL: readers no longer block the writer, nor it them.

    WAL is a property of the file (it persists), so doing it once per engine is enough; it also
    creates the file, which is what a new SQLite database should be.
    """
    connection = sqlite3.connect(file, timeout=SQLITE_BUSY_TIMEOUT_S)
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    try:
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                # Two processes opening a new file at once: the journal-mode switch needs the file
                # to itself and SQLite does not wait for it (no busy handler), so wait here.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        connection.close()


def _postgres_engine(url: str, application: str) -> PostgresEngine:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise _bad_url(url, "the port is not a number between 0 and 65535") from None
    if not parts.hostname:
        raise _bad_url(url, "the PostgreSQL host is missing")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise _bad_url(url, "name one database after the host, as in /buildit")
    dsn = "postgresql://" + url.partition("://")[2]
    # "database" is redundant for asyncpg but names Piccolo's per-engine transaction context var.
    return _PostgresEngine(
        config={"dsn": dsn, "database": database, "server_settings": {"application_name": application}}
    )


async def open_database(url: str, application: str = CONTROLLER_APPLICATION) -> AnyEngine:
    """Open the database at `url` for this process: bind the tables, migrate, start the pool.

    Safe on every start and from concurrently starting processes (see `migrate`). Raises
    ValueError for a malformed URL and DatabaseUnavailable when the server cannot be reached.
    """
    engine = engine_from_url(url, application)
    if isinstance(engine, PostgresEngine):
        try:
            await engine.start_connection_pool(min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(f"cannot open {redact_url(url)}: {exc}") from exc
    try:
        await migrate(engine)  # binds the tables to `engine`
    except BaseException:
        await close_database(engine)
        raise
    return engine


async def close_database(engine: AnyEngine) -> None:
    """Release what the engine holds open: the PostgreSQL pool or the SQLite connection."""
    if isinstance(engine, PostgresEngine) and engine.pool is not None:
        await engine.close_connection_pool()
    elif isinstance(engine, InlineSQLiteEngine):
        await engine.shutdown()


async def controller_sessions(engine: AnyEngine) -> int | None:
    """How many controller sessions are connected to the engine's PostgreSQL database (any machine).

    None for SQLite, where the database cannot say who has it open (the data directory's lock,
    controller.datadir, is what tells there).
    """
    if not isinstance(engine, PostgresEngine):
        return None
    connection = await engine.get_new_connection()
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = $1 AND pid <> pg_backend_pid()",
            CONTROLLER_APPLICATION,
        )
    finally:
        await connection.close()
    return int(count)


def sqlite_file(engine: AnyEngine) -> Path | None:
    """The database file of a SQLite engine (None for PostgreSQL)."""
    return Path(engine.path) if isinstance(engine, SQLiteEngine) else None
