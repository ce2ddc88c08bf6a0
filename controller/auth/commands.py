"""Identity operations every door adapts: sign in, API keys, the first admin, password reset.

Each state change is written to the audit log here, once, whichever door asked for it.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from uuid import UUID

from controller.audit import services as audit
from controller.auth import keys, passwords, sessions
from controller.auth.caller import Caller
from controller.auth.keys import KeyRecord
from controller.auth.oidc import OidcIdentity
from controller.auth.permissions import OrgRole, Role
from controller.auth.throttle import LoginThrottle
from controller.errors import Forbidden, Invalid, Unauthenticated
from controller.orgs import people
from controller.orgs.people import UserRef
from controller.privatefiles import write_private

ADMIN_USERNAME = "admin"
PASSWORD_FILE = "initial-admin-password"
WRONG = "wrong user name or password"


async def sign_in(
    throttle: LoginThrottle, username: str, password: str, address: str, org: UUID | None = None
) -> UserRef:
    """Check a user name and password; the message never says which half was wrong."""
    throttle.check(username, address)
    row = await people.user_login_row(username)
    stored = str(row["password_hash"]) if row else ""
    ok = passwords.verify_password(stored, password)
    if not ok or row is None or row["disabled"]:
        throttle.failed(username, address)
        await audit.record(
            "login.failed",
            username[:100],
            actor=username[:100] or "(empty)",
            org=org,
            address=address,
            outcome="denied",
        )
        raise Unauthenticated(WRONG)
    throttle.succeeded(username)
    user_id = UUID(str(row["id"]))
    if passwords.needs_rehash(stored):
        await people.set_password_hash(user_id, passwords.hash_password(password))
    await people.touch_login(user_id)
    user = await people.get_user(user_id)
    assert user is not None
    await audit.record("login", user.username, actor=user.username, org=org, address=address)
    return user


async def open_session(user: UserRef, address: str) -> tuple[str, sessions.SessionRecord]:
    """A fresh session for a signed-in user (a new id every time: rotation at login)."""
    return await sessions.create_session(user.id, address)


async def close_session(caller: Caller, session_id: UUID) -> None:
    """Sign out."""
    await sessions.revoke_session(session_id)
    await audit.record("logout", caller.name, caller=caller)


async def create_personal_key(
    caller: Caller,
    name: str,
    *,
    tenant: UUID | None = None,
    role: Role | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, KeyRecord]:
    """A key acting for the caller's user, never with more than the user's own roles."""
    if caller.user_id is None:
        raise Forbidden("only a user can create a personal API key")
    if tenant is not None and tenant not in caller.roles:
        raise Invalid("you can narrow a key only to a tenant you have a role in")
    value, record = await keys.create_key(
        caller.org,
        name,
        user=caller.user_id,
        tenant=tenant,
        role=role,
        created_by=caller.name,
        expires_at=expires_at,
    )
    await audit.record("apikey.create", f"{name} ({record.prefix})", caller=caller)
    return value, record


async def create_service_key(
    caller: Caller, name: str, role: Role, expires_at: datetime | None = None
) -> tuple[str, KeyRecord]:
    """A key of the caller's tenant with an explicit role (tenant admins)."""
    value, record = await keys.create_key(
        caller.org,
        name,
        user=None,
        tenant=caller.tenant,
        role=role,
        created_by=caller.name,
        expires_at=expires_at,
    )
    await audit.record("apikey.create", f"{name} ({record.prefix}, service, {role.label})", caller=caller)
    return value, record


async def revoke_key(caller: Caller, key_id: UUID, *, service: bool) -> None:
    """Revoke one of the caller's own keys, or (service) one of the tenant's service keys."""
    if service:
        record = await keys.revoke_key(caller.org, key_id, tenant=caller.tenant)
    else:
        if caller.user_id is None:
            raise Forbidden("only a user has personal API keys")
        record = await keys.revoke_key(caller.org, key_id, user=caller.user_id)
    await audit.record("apikey.revoke", f"{record.name} ({record.prefix})", caller=caller)


async def ensure_admin(data_dir: Path, org: UUID) -> str | None:
    """On the first start, create user `admin` (owner of the default org) with a generated password,
    written to `<data dir>/initial-admin-password` (0600); returns it, or None if users exist."""
    if await people.any_user():
        return None
    password = secrets.token_urlsafe(18)
    user = await people.create_user(ADMIN_USERNAME, passwords.hash_password(password), "Administrator")
    await people.set_membership(org, user.id, OrgRole.OWNER)
    path = data_dir / PASSWORD_FILE
    write_private(path, password + "\n")
    await audit.record("user.bootstrap", ADMIN_USERNAME, actor="system", org=org)
    return password


def initial_password(data_dir: Path) -> str | None:
    """The generated first password, while its file exists (it is for the first sign-in only)."""
    path = data_dir / PASSWORD_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


async def reset_password(username: str, password: str | None = None) -> str:
    """Set a new password (given, or generated and returned) and sign the user out everywhere."""
    user = await people.find_user(username)
    new = password or secrets.token_urlsafe(18)
    passwords.check_strength(new)
    await people.set_password_hash(user.id, passwords.hash_password(new))
    await sessions.revoke_user_sessions(user.id)
    await audit.record("user.reset_password", user.username, actor="admin (offline)")
    return new


async def oidc_user(org: UUID, identity: OidcIdentity, sync_groups: bool) -> UserRef:
    """The user of an OIDC identity: found by (issuer, subject), else created on first sign-in as a
    member of `org` (user name from the identity, suffixed when a local user has it). With a groups
    claim configured, the user's teams in `org` become exactly the teams named by their groups."""
    user = await people.user_by_oidc(identity.issuer, identity.subject)
    if user is None:
        base = _username_from(identity.username)
        name, suffix = base, 1
        while await people.user_login_row(name) is not None:
            suffix += 1
            name = f"{base[:60]}-{suffix}"
        user = await people.create_user(
            name,
            "",
            identity.name or "",
            identity.email or "",
            issuer=identity.issuer,
            subject=identity.subject,
        )
        await people.set_membership(org, user.id, OrgRole.MEMBER)
        await audit.record("user.create", f"{name} (OIDC)", actor=name, org=org)
    if user.disabled:
        raise Unauthenticated("this account is disabled")
    if sync_groups:
        wanted = set(identity.groups)
        for team_id, team_name, members in await people.teams(org):
            inside = user.username in members
            if team_name in wanted and not inside:
                await people.add_team_member(team_id, user.id)
            elif team_name not in wanted and inside:
                await people.remove_team_member(team_id, user.id)
    await people.touch_login(user.id)
    await audit.record("login", f"{user.username} (OIDC)", actor=user.username, org=org)
    return user


def _username_from(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.casefold()).strip("-._")
    try:
        return people.normalize_username(cleaned[:63] or "user")
    except Invalid:
        return "user"
