"""Pipelines: store validated `.buildit.kdl` sources under a unique name, and every version of them.

The rows only: the operations that also involve the scheduler, the logs and the audit log (edit,
delete, `buildit up --pipelines`) are in `controller.pipelines.commands`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.db import for_update, write_transaction
from controller.definition.model import Diagnostic
from controller.definition.model import Pipeline as ParsedPipeline
from controller.errors import AlreadyExists, Invalid, Unprocessable
from controller.names import check_name
from controller.pipelines.parsing import parse
from controller.pipelines.tables import Pipeline, PipelineVersion

MAX_NAME = 200


def diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    """A diagnostic for API responses."""
    return {
        "line": d.line,
        "col": d.col,
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
        "text": d.format(),
    }


def pipeline_rejected(diagnostics: list[Diagnostic]) -> Unprocessable:
    """The refusal of an invalid pipeline file, with every diagnostic for the client to show."""
    return Unprocessable(
        f"the pipeline configuration is invalid ({len(diagnostics)} problem(s)); fix them and retry",
        diagnostics=[diagnostic_json(d) for d in diagnostics],
    )


def pipeline_json(row: dict[str, Any], with_config: bool = True) -> dict[str, Any]:
    """A pipeline row for API responses."""
    out = {
        "id": str(row["id"]),
        "name": row["name"],
        "created_at": row["created_at"].isoformat() if row.get("created_at") else None,
        "updated_at": row["updated_at"].isoformat() if row.get("updated_at") else None,
        "runs": row.get("next_run_number", 0),
        "repository_id": str(row["repository"]) if row.get("repository") else None,
        "version": row.get("version", 1),
    }
    if row.get("config_sha"):
        out["config_sha"] = row["config_sha"]
    if with_config:
        out["config"] = row["config"]
    return out


async def check_config(config: object) -> ParsedPipeline:
    """The parsed pipeline of a file a user sends (create, edit), or the refusal that says what to fix:
    Invalid for something that is no file at all, Unprocessable with every diagnostic otherwise."""
    if not isinstance(config, str) or not config.strip():
        raise Invalid("'config' must be the pipeline's KDL source as a non-empty string")
    if "\0" in config:
        raise Invalid("'config' must not contain NUL characters")
    pipeline, diagnostics = await parse(config)
    if pipeline is None:
        raise pipeline_rejected(diagnostics)
    return pipeline


async def create_pipeline(
    org: UUID, tenant: UUID, config: str, name: str | None, created_by: str = ""
) -> dict[str, Any]:
    """Validate and store a pipeline (version 1); its name defaults to the file's `pipeline "name"`."""
    if name is not None and "\0" in name:
        raise Invalid("'config' and 'name' must not contain NUL characters")
    if name is not None:
        check_name(name, "'name'")
    pipeline = await check_config(config)
    final = (name if name is not None else pipeline.name).strip()
    if not final or len(final) > MAX_NAME:
        raise Invalid(f"pipeline name must be 1-{MAX_NAME} characters")
    existing = (
        await Pipeline.select(Pipeline.id)
        .where((Pipeline.tenant == tenant) & (Pipeline.name == final))
        .first()
    )
    if existing is not None:
        raise AlreadyExists(
            f"a pipeline named '{final}' already exists (id {existing['id']}); choose another name"
        )
    now = datetime.now(UTC)
    pipeline_id = uuid.uuid4()
    async with write_transaction():
        await Pipeline.insert(
            Pipeline(
                id=pipeline_id,
                org=org,
                tenant=tenant,
                name=final,
                config=config,
                created_at=now,
                updated_at=now,
                version=1,
            )
        )
        await _insert_version(pipeline_id, 1, config, "", created_by, now)
    row = await get_pipeline(tenant, pipeline_id)
    assert row is not None
    return row


async def get_pipeline(tenant: UUID, pipeline_id: UUID) -> dict[str, Any] | None:
    """One pipeline row, or None."""
    row: dict[str, Any] | None = (
        await Pipeline.select().where((Pipeline.tenant == tenant) & (Pipeline.id == pipeline_id)).first()
    )
    return row


async def find_pipeline(tenant: UUID, name_or_id: str) -> dict[str, Any] | None:
    """A pipeline of a tenant by id (its text) or by name, or None: how integrations name one."""
    try:
        key: UUID | None = UUID(name_or_id)
    except ValueError:
        key = None
    query = Pipeline.select().where(Pipeline.tenant == tenant)
    row: dict[str, Any] | None = await (
        query.where(Pipeline.id == key) if key else query.where(Pipeline.name == name_or_id)
    ).first()
    return row


async def list_pipelines(tenant: UUID) -> list[dict[str, Any]]:
    """All pipelines of a tenant, by name."""
    rows: list[dict[str, Any]] = (
        await Pipeline.select().where(Pipeline.tenant == tenant).order_by(Pipeline.name)
    )
    return rows


async def _insert_version(
    pipeline_id: UUID, version: int, config: str, sha: str, created_by: str, at: datetime
) -> None:
    await PipelineVersion.insert(
        PipelineVersion(
            id=uuid.uuid4(),
            pipeline=pipeline_id,
            version=version,
            config=config,
            sha=sha,
            created_by=created_by[:200],
            created_at=at,
        )
    )


async def replace_config(pipeline_id: UUID, config: str, *, created_by: str = "", sha: str = "") -> int:
    """Make `config` the pipeline's file as its next version; returns the new version number.

    Why versions: each run keeps the file it ran, and the pipeline keeps every file it had (who
    changed it when; for a watched repository, the commit it came from). The number is taken with
    one `UPDATE ... SET version = version + 1` with the pipeline's row locked, so two edits at once
    get two versions. A pipeline stored before versions existed first gets the row of the file it
    had. Returns 0 when the pipeline is gone.
    """
    now = datetime.now(UTC)
    async with write_transaction():
        query = Pipeline.select(Pipeline.version, Pipeline.config, Pipeline.config_sha, Pipeline.updated_at)
        current = await for_update(query.where(Pipeline.id == pipeline_id)).first()
        if current is None:
            return 0
        kept = await PipelineVersion.exists().where(
            (PipelineVersion.pipeline == pipeline_id) & (PipelineVersion.version == current["version"])
        )
        if not kept:
            await _insert_version(
                pipeline_id,
                current["version"],
                current["config"],
                current["config_sha"],
                "",
                current["updated_at"] or now,
            )
        rows = (
            await Pipeline.update(
                {
                    Pipeline.version: Pipeline.version + 1,
                    Pipeline.config: config,
                    Pipeline.config_sha: sha,
                    Pipeline.updated_at: now,
                }
            )
            .where(Pipeline.id == pipeline_id)
            .returning(Pipeline.version)
        )
        version = int(rows[0]["version"])
        await _insert_version(pipeline_id, version, config, sha, created_by, now)
    return version


async def versions(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The files a pipeline (its row) has had, newest first, without their text (`version_config`).

    A pipeline stored before versions existed has no row for its current file yet: it is listed
    from the pipeline itself."""
    rows = (
        await PipelineVersion.select(
            PipelineVersion.version,
            PipelineVersion.sha,
            PipelineVersion.created_by,
            PipelineVersion.created_at,
        )
        .where(PipelineVersion.pipeline == row["id"])
        .order_by(PipelineVersion.version, ascending=False)
    )
    current = int(row.get("version") or 1)
    if not rows or rows[0]["version"] != current:
        when = row.get("updated_at") or row.get("created_at")
        sha = row.get("config_sha", "")
        rows.insert(0, {"version": current, "sha": sha, "created_by": "", "created_at": when})
    return [
        {
            "version": r["version"],
            "sha": r["sha"] or None,
            "created_by": r["created_by"] or None,
            "created_at": r["created_at"].isoformat() if r["created_at"] else None,
        }
        for r in rows
    ]


async def version_config(row: dict[str, Any], version: int) -> str | None:
    """The file of one version of a pipeline (its row), or None."""
    found = (
        await PipelineVersion.select(PipelineVersion.config)
        .where((PipelineVersion.pipeline == row["id"]) & (PipelineVersion.version == version))
        .first()
    )
    if found is not None:
        return str(found["config"])
    return str(row["config"]) if version == int(row.get("version") or 1) else None


async def delete_pipeline_row(tenant: UUID, pipeline_id: UUID) -> bool:
    """Delete a pipeline of a tenant; its runs, stages, artifact rows, versions and secrets narrowed
    to it go with it (foreign keys cascade). False when the tenant has no such pipeline."""
    deleted = (
        await Pipeline.delete()
        .where((Pipeline.tenant == tenant) & (Pipeline.id == pipeline_id))
        .returning(Pipeline.id)
    )
    return bool(deleted)
