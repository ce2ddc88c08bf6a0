"""API keys: created (shown once), listed, revoked; and found by the value a request presents."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from controller.auth.credentials import API_KEY, digest, new_credential
from controller.auth.permissions import Role
from controller.auth.tables import ApiKey
from controller.errors import Invalid, NotFound
from controller.orgs.people import access_changed


@dataclass(frozen=True)
class KeyRecord:
    """What a request's API key stands for. `user` None: a service key with `role` in `tenant`."""

    id: UUID
    org: UUID
    tenant: UUID | None
    user: UUID | None
    role: Role | None
    name: str
    prefix: str
    expires_at: datetime | None
    revoked: bool


def _record(row: dict[str, object]) -> KeyRecord:
    role = int(str(row["role"] or 0))
    expires = row["expires_at"]
    return KeyRecord(
        UUID(str(row["id"])),
        UUID(str(row["org"])),
        UUID(str(row["tenant"])) if row["tenant"] else None,
        UUID(str(row["user"])) if row["user"] else None,
        Role(role) if role else None,
        str(row["name"]),
        str(row["prefix"]),
        expires if isinstance(expires, datetime) else None,
        row["revoked_at"] is not None,
    )


async def create_key(
    org: UUID,
    name: str,
    *,
    user: UUID | None,
    tenant: UUID | None,
    role: Role | None,
    created_by: str,
    expires_at: datetime | None = None,
) -> tuple[str, KeyRecord]:
    """A new key: (the key, shown once; its record). Personal keys have `user`; service keys a tenant+role."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("an API key needs a name of 1-100 characters (what it is for)")
    if user is None and (tenant is None or role is None):
        raise Invalid("a service key needs a tenant and a role")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Invalid("the expiry must be in the future")
    value, prefix = new_credential(API_KEY)
    key_id = uuid.uuid4()
    await ApiKey.insert(
        ApiKey(
            id=key_id,
            org=org,
            tenant=tenant,
            user=user,
            role=int(role) if role else 0,
            name=name,
            prefix=prefix,
            key_hash=digest(value),
            created_by=created_by,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
    )
    return value, KeyRecord(key_id, org, tenant, user, role, name, prefix, expires_at, False)


async def key_by_value(value: str) -> KeyRecord | None:
    """The key a request presents, revoked or not (the caller checks); None if unknown."""
    row = (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.org,
            ApiKey.tenant,
            ApiKey.user,
            ApiKey.role,
            ApiKey.name,
            ApiKey.prefix,
            ApiKey.expires_at,
            ApiKey.revoked_at,
        )
        .where(ApiKey.key_hash == digest(value))
        .first()
    )
    return _record(row) if row else None


async def touch_key(key_id: UUID, when: datetime) -> None:
    """Record that a key was used (throttled by the caller)."""
    await ApiKey.update({ApiKey.last_used_at: when}).where(ApiKey.id == key_id)


async def list_keys(
    org: UUID, *, user: UUID | None = None, tenant: UUID | None = None
) -> list[dict[str, object]]:
    """Keys of a user (personal) or of a tenant (service keys), never their values."""
    query = ApiKey.select(
        ApiKey.id,
        ApiKey.name,
        ApiKey.prefix,
        ApiKey.role,
        ApiKey.tenant,
        ApiKey.user,
        ApiKey.created_by,
        ApiKey.created_at,
        ApiKey.expires_at,
        ApiKey.last_used_at,
        ApiKey.revoked_at,
    ).where(ApiKey.org == org)
    if user is not None:
        query = query.where(ApiKey.user == user)
    if tenant is not None:
        query = query.where((ApiKey.tenant == tenant) & ApiKey.user.is_null())
    rows = await query.order_by(ApiKey.created_at)
    return [dict(row) for row in rows]


async def revoke_key(
    org: UUID, key_id: UUID, *, user: UUID | None = None, tenant: UUID | None = None
) -> KeyRecord:
    """Revoke a key now (its owner's, or a tenant's service key); NotFound if it is neither."""
    query = ApiKey.select().where((ApiKey.id == key_id) & (ApiKey.org == org))
    if user is not None:
        query = query.where(ApiKey.user == user)
    if tenant is not None:
        query = query.where((ApiKey.tenant == tenant) & ApiKey.user.is_null())
    row = await query.first()
    if row is None:
        raise NotFound(f"no API key {key_id}")
    await ApiKey.update({ApiKey.revoked_at: datetime.now(UTC)}).where(ApiKey.id == key_id)
    access_changed()
    return _record(row)
