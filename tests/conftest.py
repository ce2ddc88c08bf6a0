"""Shared test fixtures.

Docker tests run against the real engine that `make test` starts (scripts/ensure-docker.sh).
Under `make test` BUILDIT_TEST_DOCKER=required, so an unreachable engine fails the run instead of
silently skipping the container tests; run by hand without an engine, they are skipped with the reason.
The database fixtures (`database_url`, `db`) follow the same rule for PostgreSQL (see below).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from controller.db import AnyEngine

TEST_IMAGE = os.environ.get("BUILDIT_TEST_IMAGE", "buildit-test/busybox:1")


def _docker_problem() -> str | None:
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no Docker engine reachable ({exc.__class__.__name__}); run scripts/ensure-docker.sh"
    probe = subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True, timeout=20)
    if probe.returncode != 0:
        return f"test image {TEST_IMAGE} missing; run scripts/ensure-docker.sh"
    return None


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The local busybox test image; fails (under make test) or skips when Docker is unusable."""
    problem = _docker_problem()
    if problem:
        if os.environ.get("BUILDIT_TEST_DOCKER") == "required":
            pytest.fail(problem)
        pytest.skip(problem)
    return TEST_IMAGE


# --- Databases -------------------------------------------------------------------------------------
# Storage tests run on SQLite (a file in tmp_path) and on a real PostgreSQL: each test gets a fresh
# database of its own in the local cluster that scripts/ensure-postgres.sh starts, dropped after.
# Under `make test` BUILDIT_TEST_POSTGRES=required, so an unreachable server fails the run; by hand
# without one, the PostgreSQL cases are skipped with the reason. controller.db is imported inside
# the fixtures, so tests that use no database never import Piccolo.

DEFAULT_TEST_POSTGRES_URL = "postgresql://buildit:buildit@127.0.0.1:5432/buildit_test"


def _postgres_server_url() -> str:
    return os.environ.get("BUILDIT_TEST_POSTGRES_URL") or DEFAULT_TEST_POSTGRES_URL


def _with_database(url: str, database: str) -> str:
    """`url` pointing at another database of the same server."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_postgres_server_url(), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _drop_postgres_database(name: str) -> None:
    """Drop a test database, ending our own sessions still on it (a subprocess, a leaked pool).

    Not `DROP DATABASE ... WITH (FORCE)`: as a non-superuser it fails when an autovacuum worker
    happens to be in the database, which a plain DROP handles itself.
    """
    import asyncio

    import asyncpg

    connection = await asyncpg.connect(_postgres_server_url(), timeout=5)
    try:
        for attempt in range(20):
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()",
                name,
            )
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except asyncpg.ObjectInUseError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The test cluster's URL, checked once per session; fails (make test) or skips when unreachable."""
    import asyncio

    from controller.db import redact_url

    try:
        asyncio.run(_postgres_admin("SELECT 1"))
    except Exception as exc:
        problem = (
            f"no PostgreSQL reachable at {redact_url(_postgres_server_url())} "
            f"({exc.__class__.__name__}: {exc}); run scripts/ensure-postgres.sh"
        )
        if os.environ.get("BUILDIT_TEST_POSTGRES") == "required":
            pytest.fail(problem)
        pytest.skip(problem)
    return _postgres_server_url()


@contextlib.contextmanager
def _empty_database(request: pytest.FixtureRequest, engine: str, directory: Path) -> Iterator[str]:
    """The URL of an empty database of `engine` (a file in `directory`, or a fresh PostgreSQL
    database dropped afterwards)."""
    if engine == "sqlite":
        yield f"sqlite:///{directory}/buildit.db"
        return
    import asyncio
    import uuid

    server_url = request.getfixturevalue("postgres_server_url")
    name = f"buildit_t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(_drop_postgres_database(name))


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty database, once per engine."""
    with _empty_database(request, request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`database_url` shared by a module's tests: for modules that start one controller per engine
    and run many cheap checks against it (starting one per test would cost more than the checks)."""
    with _empty_database(request, request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AnyEngine]:
    """The database of `database_url`, opened (bound, migrated, pooled) for this test."""
    from controller.db import close_database, open_database

    engine = await open_database(database_url)
    try:
        yield engine
    finally:
        await close_database(engine)


# --- Browser ---------------------------------------------------------------------------------------
# The browser tests (tests/e2e) drive Debian's chromium with Playwright; `make test` installs it
# (scripts/ensure-chromium.sh) and sets BUILDIT_TEST_BROWSER=required, so a missing browser fails the
# run; by hand without one, the browser tests are skipped with the reason.

CHROMIUM = "/usr/bin/chromium"


def _browser_problem() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"no browser at {CHROMIUM}; run scripts/ensure-chromium.sh"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed; run make install"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium for Playwright; fails (under make test) or skips when it is unusable."""
    problem = _browser_problem()
    if problem:
        if os.environ.get("BUILDIT_TEST_BROWSER") == "required":
            pytest.fail(problem)
        pytest.skip(problem)
    return CHROMIUM
