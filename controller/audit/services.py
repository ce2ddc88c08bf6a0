"""Recording and reading the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from controller.audit.tables import AuditEvent
from controller.auth.caller import Caller
from controller.db.columns import loaded


async def record(
    action: str,
    target: str,
    *,
    caller: Caller | None = None,
    actor: str = "",
    org: UUID | None = None,
    tenant: UUID | Literal["caller"] | None = "caller",
    address: str = "",
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event. Never pass secret values in `target` or `detail` (names only).

    `tenant` defaults to the caller's; `tenant=None` records an organization-level action (members,
    teams), which every tenant admin's view of the log shows.
    """
    await AuditEvent.insert(
        AuditEvent(
            at=datetime.now(UTC),
            org=org if org is not None else (caller.org if caller else None),
            tenant=(caller.tenant if caller else None) if tenant == "caller" else tenant,
            actor=(actor or (caller.name if caller else "system"))[:200],
            action=action[:64],
            target=target[:2000],
            address=(address or (caller.address if caller else ""))[:64],
            outcome=outcome[:16],
            detail=detail or {},
        )
    )


async def events(
    org: UUID, tenant: UUID | None, limit: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    """Newest first: the org's events (with `tenant`: that tenant's and org-level ones)."""
    query = AuditEvent.select().where(AuditEvent.org == org)
    if tenant is not None:
        query = query.where((AuditEvent.tenant == tenant) | AuditEvent.tenant.is_null())
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = await query.order_by(AuditEvent.id, ascending=False).limit(limit)
    return [
        {
            "id": r["id"],
            "at": r["at"].isoformat(),
            "actor": r["actor"],
            "action": r["action"],
            "target": r["target"],
            "tenant": str(r["tenant"]) if r["tenant"] else None,
            "address": r["address"],
            "outcome": r["outcome"],
            "detail": loaded(r["detail"]) or {},
        }
        for r in rows
    ]
