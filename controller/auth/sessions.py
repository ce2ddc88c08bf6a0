"""Web sessions: server-side rows behind an opaque cookie, revocable, with idle and absolute expiry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from controller.auth.credentials import digest, new_csrf_token, new_session_id
from controller.auth.tables import WebSession
from controller.orgs.people import access_changed

IDLE = timedelta(hours=8)
ABSOLUTE = timedelta(days=7)
#: last_seen_at is written at most this often (not on every request).
TOUCH_EVERY = timedelta(minutes=1)


@dataclass
class SessionRecord:
    """A live session as a request sees it."""

    id: UUID
    user: UUID
    tenant: UUID | None
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime


async def create_session(user: UUID, address: str, tenant: UUID | None = None) -> tuple[str, SessionRecord]:
    """A new session (always a new id: signing in rotates it); returns (cookie value, record)."""
    cookie = new_session_id()
    now = datetime.now(UTC)
    record = SessionRecord(uuid.uuid4(), user, tenant, new_csrf_token(), now, now)
    await WebSession.insert(
        WebSession(
            id=record.id,
            id_hash=digest(cookie),
            user=user,
            tenant=tenant,
            csrf_token=record.csrf_token,
            created_at=now,
            last_seen_at=now,
            address=address[:64],
        )
    )
    return cookie, record


async def session_by_cookie(cookie: str, now: datetime) -> SessionRecord | None:
    """The live session of a cookie; None if unknown, revoked, idle too long or too old."""
    row = (
        await WebSession.select(
            WebSession.id,
            WebSession.user,
            WebSession.tenant,
            WebSession.csrf_token,
            WebSession.created_at,
            WebSession.last_seen_at,
            WebSession.revoked,
        )
        .where(WebSession.id_hash == digest(cookie))
        .first()
    )
    if row is None or row["revoked"]:
        return None
    record = SessionRecord(
        UUID(str(row["id"])),
        UUID(str(row["user"])),
        UUID(str(row["tenant"])) if row["tenant"] else None,
        str(row["csrf_token"]),
        row["created_at"],
        row["last_seen_at"],
    )
    if not is_live(record, now):
        return None
    return record


def is_live(record: SessionRecord, now: datetime) -> bool:
    """Not idle longer than IDLE, not older than ABSOLUTE."""
    return now - record.last_seen_at <= IDLE and now - record.created_at <= ABSOLUTE


async def touch_session(session_id: UUID, now: datetime) -> None:
    """Record activity (the idle clock restarts)."""
    await WebSession.update({WebSession.last_seen_at: now}).where(WebSession.id == session_id)


async def set_session_tenant(session_id: UUID, tenant: UUID) -> None:
    """Remember the tenant the user switched to."""
    await WebSession.update({WebSession.tenant: tenant}).where(WebSession.id == session_id)
    access_changed()


async def revoke_session(session_id: UUID) -> None:
    """Sign out: the cookie stops working at once."""
    await WebSession.update({WebSession.revoked: True}).where(WebSession.id == session_id)
    access_changed()


async def revoke_user_sessions(user: UUID) -> None:
    """Sign a user out everywhere (password reset, user disabled)."""
    await WebSession.update({WebSession.revoked: True}).where(WebSession.user == user)
    access_changed()
