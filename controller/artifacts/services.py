"""Artifact rows: which stage of which run produced which path, with which content.

The content itself lives in `controller.artifacts.store`; these functions keep the index. A stage
has at most one row per path (unique (stage_run, path)): uploading a path again replaces its row,
so a retried attempt's artifacts replace the earlier attempt's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.artifacts.tables import Artifact
from controller.db import is_unique_violation, write_transaction

__all__ = [
    "artifact_json",
    "contents_of_runs",
    "find_artifact",
    "forget_earlier_attempts",
    "forget_stage",
    "list_for_run",
    "list_for_stages",
    "record_artifact",
    "referenced",
    "stage_bytes",
]


async def record_artifact(
    *,
    org: UUID,
    tenant: UUID,
    run_id: UUID,
    stage_run_id: UUID,
    stage: str,
    path: str,
    sha256: str,
    size: int,
) -> UUID:
    """Insert the row of an uploaded artifact, replacing the stage's earlier row for that path.

    Delete-then-insert in one transaction rather than an upsert: it reads the same on SQLite and
    PostgreSQL. Two uploads of one path racing (only a misbehaving agent does that) end with one
    row: the loser's unique violation is retried once and replaces the winner's row.
    """
    artifact_id = uuid.uuid4()
    row = Artifact(
        id=artifact_id,
        org=org,
        tenant=tenant,
        run=run_id,
        stage_run=stage_run_id,
        stage=stage,
        path=path,
        sha256=sha256,
        size=size,
        created_at=datetime.now(UTC),
    )
    for attempt in range(2):
        try:
            async with write_transaction():
                await Artifact.delete().where((Artifact.stage_run == stage_run_id) & (Artifact.path == path))
                await Artifact.insert(row)
            return artifact_id
        except Exception as exc:
            if attempt == 0 and is_unique_violation(exc):
                continue
            raise
    raise AssertionError("unreachable")


async def stage_bytes(stage_run_id: UUID, *, except_path: str | None = None) -> int:
    """Total size of a stage's stored artifacts (leaving out `except_path`, about to be replaced)."""
    query = Artifact.select(Artifact.path, Artifact.size).where(Artifact.stage_run == stage_run_id)
    rows = await query
    return sum(int(r["size"]) for r in rows if r["path"] != except_path)


async def forget_stage(stage_run_id: UUID) -> None:
    """Drop every artifact row of a stage (its artifacts went over the limit: none are kept)."""
    await Artifact.delete().where(Artifact.stage_run == stage_run_id)


async def forget_earlier_attempts(stage_run_id: UUID, before: datetime) -> None:
    """Drop a stage's rows created before `before` (the lease of a new attempt was granted then).

    A new attempt uploads its own artifacts; a path the earlier attempt uploaded and this one does
    not must not reach the stages that need it.
    """
    await Artifact.delete().where((Artifact.stage_run == stage_run_id) & (Artifact.created_at < before))


async def list_for_run(tenant: UUID, run_id: UUID) -> list[dict[str, Any]]:
    """A run's artifacts (of the tenant), by stage then path."""
    rows: list[dict[str, Any]] = (
        await Artifact.select()
        .where((Artifact.run == run_id) & (Artifact.tenant == tenant))
        .order_by(Artifact.stage)
        .order_by(Artifact.path)
    )
    return rows


async def list_for_stages(run_id: UUID, stages: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """The artifacts of the named stages of a run: in the order the stages are named, then by path.

    The order decides which file wins when two needed stages produced the same path (the later).
    """
    if not stages:
        return []
    rows: list[dict[str, Any]] = (
        await Artifact.select()
        .where((Artifact.run == run_id) & (Artifact.stage.is_in(list(stages))))
        .order_by(Artifact.path)
    )
    rank = {name: index for index, name in enumerate(stages)}
    return sorted(rows, key=lambda r: (rank.get(r["stage"], len(rank)), r["path"]))


async def find_artifact(tenant: UUID, run_id: UUID, artifact_id: UUID) -> dict[str, Any] | None:
    """One artifact of a run (of the tenant), or None."""
    row: dict[str, Any] | None = (
        await Artifact.select()
        .where((Artifact.id == artifact_id) & (Artifact.run == run_id) & (Artifact.tenant == tenant))
        .first()
    )
    return row


def artifact_json(row: dict[str, Any], download_url: str) -> dict[str, Any]:
    """An artifact for API responses."""
    created = row["created_at"]
    return {
        "id": str(row["id"]),
        "stage": row["stage"],
        "path": row["path"],
        "size": int(row["size"]),
        "sha256": row["sha256"],
        "created_at": created.isoformat() if created is not None else None,
        "download_url": download_url,
    }


async def contents_of_runs(run_ids: list[UUID]) -> set[str]:
    """The content addresses (sha256) the artifacts of these runs point at."""
    found: set[str] = set()
    for start in range(0, len(run_ids), 500):  # bounded IN lists
        chunk = run_ids[start : start + 500]
        rows = await Artifact.select(Artifact.sha256).where(Artifact.run.is_in(chunk))
        found.update(str(r["sha256"]) for r in rows)
    return found


async def referenced(contents: set[str]) -> set[str]:
    """Those of `contents` (sha256) that some artifact row still points at."""
    wanted = sorted(contents)
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = await Artifact.select(Artifact.sha256).where(Artifact.sha256.is_in(chunk))
        found.update(str(r["sha256"]) for r in rows)
    return found
