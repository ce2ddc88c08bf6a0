"""Agent registration tokens: objects of an org (a pool serving all its tenants) or of one tenant."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from controller.auth.credentials import REGISTRATION_TOKEN, digest, new_credential
from controller.auth.tables import AgentToken
from controller.errors import AlreadyExists, Invalid, NotFound


@dataclass(frozen=True)
class TokenScope:
    """What an agent enrolled with a token may serve: every tenant of `org`, or just `tenant`."""

    token_id: UUID
    org: UUID
    tenant: UUID | None


async def create_token(org: UUID, tenant: UUID | None, name: str, created_by: str) -> tuple[str, UUID]:
    """A new registration token (shown once) and its id."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("a registration token needs a name of 1-100 characters")
    if await AgentToken.exists().where((AgentToken.org == org) & (AgentToken.name == name)):
        raise AlreadyExists(f"a registration token named '{name}' already exists")
    value, prefix = new_credential(REGISTRATION_TOKEN)
    token_id = uuid.uuid4()
    await AgentToken.insert(
        AgentToken(
            id=token_id,
            org=org,
            tenant=tenant,
            name=name,
            prefix=prefix,
            token_hash=digest(value),
            created_by=created_by,
            created_at=datetime.now(UTC),
        )
    )
    return value, token_id


async def adopt_token(org: UUID, value: str, name: str) -> None:
    """Keep a token given in settings (`.buildit/` or BUILDIT_REGISTRATION_TOKEN) working as an
    org-wide token, so agents set up before tokens were objects still enrol after the upgrade."""
    hashed = digest(value)
    if await AgentToken.exists().where(AgentToken.token_hash == hashed):
        return
    base, suffix = name, 1
    while await AgentToken.exists().where((AgentToken.org == org) & (AgentToken.name == name)):
        suffix += 1
        name = f"{base}-{suffix}"
    await AgentToken.insert(
        AgentToken(
            org=org,
            tenant=None,
            name=name,
            prefix=value[:4] + "…",
            token_hash=hashed,
            created_by="settings",
            created_at=datetime.now(UTC),
            meta={"source": "settings"},
        )
    )


async def scope_of(value: str) -> TokenScope | None:
    """The scope of a live registration token, or None (unknown or revoked)."""
    hashed = digest(value)
    row = (
        await AgentToken.select(
            AgentToken.id, AgentToken.org, AgentToken.tenant, AgentToken.revoked_at, AgentToken.token_hash
        )
        .where(AgentToken.token_hash == hashed)
        .first()
    )
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(str(row["token_hash"]), hashed):
        return None
    return TokenScope(
        UUID(str(row["id"])), UUID(str(row["org"])), UUID(str(row["tenant"])) if row["tenant"] else None
    )


async def list_tokens(org: UUID, tenant: UUID | None) -> list[dict[str, object]]:
    """The org's tokens (with `tenant` given: that tenant's and the org-wide ones), never values."""
    query = AgentToken.select(
        AgentToken.id,
        AgentToken.name,
        AgentToken.prefix,
        AgentToken.tenant,
        AgentToken.created_by,
        AgentToken.created_at,
        AgentToken.revoked_at,
    ).where(AgentToken.org == org)
    if tenant is not None:
        query = query.where((AgentToken.tenant == tenant) | AgentToken.tenant.is_null())
    return [dict(r) for r in await query.order_by(AgentToken.created_at)]


async def revoke_token(org: UUID, tenant: UUID | None, token_id: UUID) -> str:
    """Revoke a token: agents cannot enrol with it any more (enrolled agents keep their own
    credential until removed). Tenant maintainers revoke their tenant's tokens; org admins any."""
    query = AgentToken.select(AgentToken.name).where((AgentToken.id == token_id) & (AgentToken.org == org))
    if tenant is not None:
        query = query.where(AgentToken.tenant == tenant)
    row = await query.first()
    if row is None:
        raise NotFound(f"no registration token {token_id}")
    await AgentToken.update({AgentToken.revoked_at: datetime.now(UTC)}).where(AgentToken.id == token_id)
    return str(row["name"])
