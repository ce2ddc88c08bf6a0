"""Turning a request's credential into a principal, cheaply: in-process caches keyed by the
credential's hash, dropped whenever an identity write bumps the access generation.

Revocation through this process is effective at the next request; expiry and idle time are
checked on every request. (Several replicas: see issue 14's notifications.)
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from controller.auth import keys, sessions
from controller.auth.credentials import digest
from controller.auth.keys import KeyRecord
from controller.auth.permissions import OrgRole, Role
from controller.auth.sessions import SessionRecord
from controller.orgs import people
from controller.orgs.people import TenantRef, access_generation

KEY_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who a credential stands for and what they may see."""

    kind: str  # "user" (session), "key"
    name: str
    user_id: UUID | None
    key_id: UUID | None
    org_roles: dict[UUID, OrgRole]
    roles: dict[UUID, Role]
    session: SessionRecord | None = None


@dataclass
class _Cached:
    generation: int
    value: object


@dataclass
class Authenticator:
    """Finds principals by API key or session cookie; tenants and roles are cached per generation."""

    _keys: dict[str, _Cached] = field(default_factory=dict)
    _sessions: dict[str, _Cached] = field(default_factory=dict)
    _roles: dict[UUID, _Cached] = field(default_factory=dict)
    _users: dict[UUID, _Cached] = field(default_factory=dict)
    _tenants: _Cached | None = None
    _key_touched: dict[UUID, datetime] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def tenants(self) -> dict[UUID, TenantRef]:
        """Every tenant, by id."""
        generation = access_generation()
        if self._tenants is None or self._tenants.generation != generation:
            self._tenants = _Cached(generation, await people.all_tenants())
        value = self._tenants.value
        assert isinstance(value, dict)
        return value

    async def user_roles(self, user_id: UUID) -> tuple[dict[UUID, OrgRole], dict[UUID, Role]]:
        """A user's org and tenant roles (none if the user is disabled or gone)."""
        generation = access_generation()
        cached = self._roles.get(user_id)
        if cached is None or cached.generation != generation:
            user = await self.user(user_id)
            value = ({}, {}) if user is None or user.disabled else await people.user_roles(user_id)
            cached = self._roles[user_id] = _Cached(generation, value)
        result = cached.value
        assert isinstance(result, tuple)
        return result

    async def user(self, user_id: UUID) -> people.UserRef | None:
        """A user (None when deleted), cached per generation: every credential checks it is enabled."""
        generation = access_generation()
        cached = self._users.get(user_id)
        if cached is None or cached.generation != generation:
            cached = self._users[user_id] = _Cached(generation, await people.get_user(user_id))
        return cached.value if isinstance(cached.value, people.UserRef) else None

    async def username(self, user_id: UUID) -> str:
        """A user's name for the audit log and messages."""
        user = await self.user(user_id)
        return user.username if user else "(deleted user)"

    async def by_key(self, value: str, now: datetime) -> Principal | None:
        """The principal of an API key; None when unknown, revoked or expired."""
        hashed = digest(value)
        generation = access_generation()
        cached = self._keys.get(hashed)
        if cached is None or cached.generation != generation:
            if len(self._keys) > 10_000:
                self._keys.clear()
            cached = self._keys[hashed] = _Cached(generation, await keys.key_by_value(value))
        record = cached.value
        if not isinstance(record, KeyRecord) or record.revoked:
            return None
        if record.expires_at is not None and record.expires_at <= now:
            return None
        if record.user is not None and not await self._enabled(record.user):
            return None  # a disabled user's keys stop working with their sessions
        self._touch_key(record.id, now)
        if record.user is None:
            roles = {record.tenant: record.role} if record.tenant and record.role else {}
            return Principal("key", f"key:{record.prefix}", None, record.id, {}, roles)
        org_roles, user_roles = await self.user_roles(record.user)
        roles = dict(user_roles)
        if record.tenant is not None:
            roles = {record.tenant: roles[record.tenant]} if record.tenant in roles else {}
        if record.role is not None:
            roles = {t: min(r, record.role) for t, r in roles.items()}
        # A key acts for its user inside its own org only.
        org_roles = {o: r for o, r in org_roles.items() if o == record.org}
        tenants = await self.tenants()
        roles = {t: r for t, r in roles.items() if t in tenants and tenants[t].org == record.org}
        name = await self.username(record.user)
        return Principal("key", name, record.user, record.id, org_roles, roles)

    async def by_session(self, cookie: str, now: datetime) -> Principal | None:
        """The principal of a session cookie; None when unknown, revoked, idle or too old."""
        hashed = digest(cookie)
        generation = access_generation()
        cached = self._sessions.get(hashed)
        if cached is None or cached.generation != generation:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            cached = self._sessions[hashed] = _Cached(
                generation, await sessions.session_by_cookie(cookie, now)
            )
        record = cached.value
        if not isinstance(record, SessionRecord) or not sessions.is_live(record, now):
            return None
        if not await self._enabled(record.user):
            return None
        if now - record.last_seen_at >= sessions.TOUCH_EVERY:
            record.last_seen_at = now
            self._spawn(sessions.touch_session(record.id, now))
        org_roles, roles = await self.user_roles(record.user)
        name = await self.username(record.user)
        return Principal("user", name, record.user, None, org_roles, roles, record)

    async def _enabled(self, user_id: UUID) -> bool:
        user = await self.user(user_id)
        return user is not None and not user.disabled

    def _touch_key(self, key_id: UUID, now: datetime) -> None:
        last = self._key_touched.get(key_id)
        if last is None or now - last >= KEY_TOUCH_EVERY:
            self._key_touched[key_id] = now
            self._spawn(keys.touch_key(key_id, now))

    def _spawn(self, write: object) -> None:
        """A bookkeeping write (last used/seen) off the request's path; failures only cost freshness."""

        async def run() -> None:
            with contextlib.suppress(Exception):
                await write  # type: ignore[misc]

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def utcnow() -> datetime:
    """The time credentials are checked against."""
    return datetime.now(UTC)
