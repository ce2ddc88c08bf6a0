"""Pipelines: store validated `.buildit.kdl` sources under a unique name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.definition.model import Diagnostic
from controller.errors import AlreadyExists, Invalid, Unprocessable
from controller.names import check_name
from controller.pipelines.parsing import parse
from controller.pipelines.tables import Pipeline

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
    }
    if with_config:
        out["config"] = row["config"]
    return out


async def create_pipeline(org: UUID, tenant: UUID, config: str, name: str | None) -> dict[str, Any]:
    """Validate and store a pipeline; its name defaults to the file's `pipeline "name"`."""
    if "\0" in config or (name is not None and "\0" in name):
        raise Invalid("'config' and 'name' must not contain NUL characters")
    if name is not None:
        check_name(name, "'name'")
    pipeline, diagnostics = await parse(config)
    if pipeline is None:
        raise pipeline_rejected(diagnostics)
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
    await Pipeline.insert(
        Pipeline(
            id=pipeline_id, org=org, tenant=tenant, name=final, config=config, created_at=now, updated_at=now
        )
    )
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
