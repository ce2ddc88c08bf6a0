"""Helpers of the secrets tests: rows as an older controller wrote them, and everything a database holds."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.pipelines.tables import Pipeline
from controller.repos.tables import Repository
from tests.support.old_schema import insert_old


async def legacy_repository(org: Any, tenant: Any, secret: str, token: str) -> uuid.UUID:
    """A repository (and its pipeline) as an older controller stored it: secrets in plain text."""
    repo_id = uuid.uuid4()
    await insert_old(
        Repository(
            id=repo_id,
            org=org,
            tenant=tenant,
            name=f"app-{repo_id.hex[:6]}",
            url="/srv/app",
            kind="local",
            webhook_secret=secret,
            status_kind="github" if token else "",
            status_api_url="https://api.github.com" if token else "",
            status_repo="o/r" if token else "",
            status_token=token,
        )
    )
    now = datetime.now(UTC)
    await insert_old(
        Pipeline(
            id=uuid.uuid4(),
            org=org,
            tenant=tenant,
            name=f"p-{repo_id.hex[:6]}",
            config="",
            created_at=now,
            updated_at=now,
            repository=repo_id,
        )
    )
    return repo_id


def everything_stored(database_url: str) -> str:
    """Every row of every table, as text (with the controller stopped): what a stolen database shows.

    SQLite: the database file and its write-ahead log, byte for byte (nothing hides in free pages
    either); PostgreSQL: each row as JSON.
    """
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
        with sqlite3.connect(path) as connection:  # reading checkpoints nothing away: WAL read too
            connection.execute("SELECT 1").fetchall()
        data = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
        return data.decode("utf-8", "replace")
    return asyncio.run(_postgres_rows(database_url))


async def _postgres_rows(url: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        texts = []
        for table in tables:
            rows = await connection.fetch(
                f'SELECT row_to_json(t)::text AS row FROM "{table["table_name"]}" t'
            )
            texts.extend(row["row"] for row in rows)
        return "\n".join(texts)
    finally:
        await connection.close()
