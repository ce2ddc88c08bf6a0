"""Users, memberships, teams and tenant grants: who belongs where, with which role.

Every write bumps `access_generation`, which the in-process caches of roles and credentials
compare against, so a revoked grant or a removed member loses access at the next request.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.auth.permissions import OrgRole, Role
from controller.errors import AlreadyExists, Invalid, NotFound
from controller.orgs.tables import Membership, Organization, Team, TeamMember, Tenant, TenantGrant, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Generation:
    value = 0


def access_generation() -> int:
    """A number that changes whenever a membership, team, grant, key or user changes (in this process)."""
    return _Generation.value


def access_changed() -> None:
    """Invalidate cached roles and credentials (call after every identity write)."""
    _Generation.value += 1


@dataclass(frozen=True)
class TenantRef:
    """A tenant as people see it: `org_slug/slug`."""

    id: UUID
    org: UUID
    slug: str
    name: str
    org_slug: str

    @property
    def path(self) -> str:
        """`org/tenant`, how tenants are named in the CLI, headers and the UI."""
        return f"{self.org_slug}/{self.slug}"


@dataclass(frozen=True)
class UserRef:
    """A user without credentials."""

    id: UUID
    username: str
    display_name: str
    email: str
    disabled: bool


def normalize_username(text: str) -> str:
    """The stored form of a login name; Invalid with the allowed shape otherwise."""
    name = unicodedata.normalize("NFKC", text).strip().casefold()
    if not USERNAME.match(name):
        raise Invalid(
            f"invalid user name {text!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_slug(text: str, what: str) -> str:
    """A URL-safe handle (org, tenant); Invalid with the allowed shape otherwise."""
    if not SLUG.match(text):
        raise Invalid(
            f"invalid {what} {text!r}: use 1-63 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return text


def _user(row: dict[str, object]) -> UserRef:
    return UserRef(
        UUID(str(row["id"])),
        str(row["username"]),
        str(row["display_name"]),
        str(row["email"]),
        bool(row["disabled"]),
    )


async def create_user(
    username: str, password_hash: str = "", display_name: str = "", email: str = "", **oidc: str
) -> UserRef:
    """A new user (AlreadyExists if the name is taken)."""
    name = normalize_username(username)
    if await User.exists().where(User.username == name):
        raise AlreadyExists(f"a user named '{name}' already exists")
    user_id = uuid.uuid4()
    await User.insert(
        User(
            id=user_id,
            username=name,
            display_name=display_name or name,
            email=email,
            password_hash=password_hash,
            oidc_issuer=oidc.get("issuer", ""),
            oidc_subject=oidc.get("subject", ""),
            created_at=datetime.now(UTC),
        )
    )
    access_changed()
    return UserRef(user_id, name, display_name or name, email, False)


async def user_login_row(username: str) -> dict[str, object] | None:
    """A user's id, name, password hash and disabled flag, for signing in."""
    try:
        name = normalize_username(username)
    except Invalid:
        return None
    row = (
        await User.select(User.id, User.username, User.password_hash, User.disabled)
        .where(User.username == name)
        .first()
    )
    return dict(row) if row else None


async def user_by_oidc(issuer: str, subject: str) -> UserRef | None:
    """The user who signed in before with this OIDC identity."""
    row = await User.select().where((User.oidc_issuer == issuer) & (User.oidc_subject == subject)).first()
    return _user(row) if row else None


async def get_user(user_id: UUID) -> UserRef | None:
    """A user by id."""
    row = await User.select().where(User.id == user_id).first()
    return _user(row) if row else None


async def find_user(username: str) -> UserRef:
    """A user by name; NotFound otherwise."""
    row = await User.select().where(User.username == normalize_username(username)).first()
    if row is None:
        raise NotFound(f"no user named '{username}'")
    return _user(row)


async def set_password_hash(user_id: UUID, password_hash: str) -> None:
    """Store a new password hash (reset, change, or re-hash with today's parameters)."""
    await User.update({User.password_hash: password_hash}).where(User.id == user_id)


async def set_disabled(user_id: UUID, disabled: bool) -> None:
    """Disable a user (no sign-in, no session, no key works) or enable them again."""
    await User.update({User.disabled: disabled}).where(User.id == user_id)
    access_changed()


async def touch_login(user_id: UUID) -> None:
    """Record a successful sign-in."""
    await User.update({User.last_login_at: datetime.now(UTC)}).where(User.id == user_id)


async def set_membership(org: UUID, user_id: UUID, role: OrgRole) -> None:
    """Make the user a member of the org with `role` (or change their role)."""
    existing = (
        await Membership.select(Membership.id)
        .where((Membership.org == org) & (Membership.user == user_id))
        .first()
    )
    if existing:
        await Membership.update({Membership.role: int(role)}).where(Membership.id == existing["id"])
    else:
        await Membership.insert(
            Membership(org=org, user=user_id, role=int(role), created_at=datetime.now(UTC))
        )
    access_changed()


async def remove_membership(org: UUID, user_id: UUID) -> None:
    """Remove the user from the org, with their team places and grants in it."""
    await Membership.delete().where((Membership.org == org) & (Membership.user == user_id))
    teams = [r["id"] for r in await Team.select(Team.id).where(Team.org == org)]
    if teams:
        await TeamMember.delete().where(TeamMember.team.is_in(teams) & (TeamMember.user == user_id))
    tenants = [r["id"] for r in await Tenant.select(Tenant.id).where(Tenant.org == org)]
    if tenants:
        await TenantGrant.delete().where(TenantGrant.tenant.is_in(tenants) & (TenantGrant.user == user_id))
    access_changed()


async def members(org: UUID) -> list[tuple[UserRef, OrgRole]]:
    """The org's members with their org roles, by name."""
    rows = await Membership.select(
        Membership.role,
        Membership.user.id.as_alias("uid"),
        Membership.user.username.as_alias("username"),
        Membership.user.display_name.as_alias("display_name"),
        Membership.user.email.as_alias("email"),
        Membership.user.disabled.as_alias("disabled"),
    ).where(Membership.org == org)
    result = [
        (
            UserRef(UUID(str(r["uid"])), r["username"], r["display_name"], r["email"], bool(r["disabled"])),
            OrgRole(r["role"]),
        )
        for r in rows
    ]
    return sorted(result, key=lambda item: item[0].username)


async def create_team(org: UUID, name: str) -> UUID:
    """A new, empty team of the org."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("a team name must have 1-100 characters")
    if await Team.exists().where((Team.org == org) & (Team.name == name)):
        raise AlreadyExists(f"a team named '{name}' already exists")
    team_id = uuid.uuid4()
    await Team.insert(Team(id=team_id, org=org, name=name, created_at=datetime.now(UTC)))
    access_changed()
    return team_id


async def find_team(org: UUID, ref: str) -> UUID:
    """A team of the org by name or id; NotFound otherwise."""
    condition: Any = Team.name == ref
    with contextlib.suppress(ValueError):
        condition = condition | (Team.id == UUID(ref))
    row = await Team.select(Team.id).where((Team.org == org) & condition).first()
    if row is None:
        raise NotFound(f"no team '{ref}' in this organization")
    return UUID(str(row["id"]))


async def team_name(team_id: UUID) -> str:
    """A team's name (for the audit log), "" when it is gone."""
    row = await Team.select(Team.name).where(Team.id == team_id).first()
    return str(row["name"]) if row else ""


async def teams(org: UUID) -> list[tuple[UUID, str, list[str]]]:
    """The org's teams with their members' names."""
    result = []
    for row in await Team.select(Team.id, Team.name).where(Team.org == org).order_by(Team.name):
        names = await TeamMember.select(TeamMember.user.username.as_alias("username")).where(
            TeamMember.team == row["id"]
        )
        result.append((UUID(str(row["id"])), str(row["name"]), sorted(n["username"] for n in names)))
    return result


async def delete_team(team_id: UUID) -> None:
    """Delete a team; its members lose what it granted."""
    await Team.delete().where(Team.id == team_id)
    access_changed()


async def set_team_members(team_id: UUID, user_ids: set[UUID]) -> None:
    """Make the team's members exactly `user_ids` (OIDC group sync, the team page)."""
    current = {
        UUID(str(r["user"]))
        for r in await TeamMember.select(TeamMember.user).where(TeamMember.team == team_id)
    }
    for user_id in current - user_ids:
        await TeamMember.delete().where((TeamMember.team == team_id) & (TeamMember.user == user_id))
    for user_id in user_ids - current:
        await TeamMember.insert(TeamMember(team=team_id, user=user_id))
    if current != user_ids:
        access_changed()


async def add_team_member(team_id: UUID, user_id: UUID) -> None:
    """Put a user in a team (no-op if already there)."""
    if not await TeamMember.exists().where((TeamMember.team == team_id) & (TeamMember.user == user_id)):
        await TeamMember.insert(TeamMember(team=team_id, user=user_id))
        access_changed()


async def remove_team_member(team_id: UUID, user_id: UUID) -> None:
    """Take a user out of a team."""
    await TeamMember.delete().where((TeamMember.team == team_id) & (TeamMember.user == user_id))
    access_changed()


async def user_team_names(org: UUID, user_id: UUID) -> set[str]:
    """The names of the org's teams the user is in."""
    rows = await TeamMember.select(
        TeamMember.team.name.as_alias("name"), TeamMember.team.org.as_alias("org")
    ).where(TeamMember.user == user_id)
    return {str(r["name"]) for r in rows if UUID(str(r["org"])) == org}


async def grant(tenant: UUID, role: Role, *, user: UUID | None = None, team: UUID | None = None) -> None:
    """Give a user or a team `role` in a tenant (replacing an earlier grant)."""
    if (user is None) == (team is None):
        raise Invalid("a grant goes to exactly one user or one team")
    who = (TenantGrant.user == user) if user is not None else (TenantGrant.team == team)
    existing = await TenantGrant.select(TenantGrant.id).where((TenantGrant.tenant == tenant) & who).first()
    if existing:
        await TenantGrant.update({TenantGrant.role: int(role)}).where(TenantGrant.id == existing["id"])
    else:
        await TenantGrant.insert(
            TenantGrant(tenant=tenant, user=user, team=team, role=int(role), created_at=datetime.now(UTC))
        )
    access_changed()


async def revoke_grant(tenant: UUID, *, user: UUID | None = None, team: UUID | None = None) -> bool:
    """Remove a user's or team's grant in a tenant; whether there was one."""
    who = (TenantGrant.user == user) if user is not None else (TenantGrant.team == team)
    existing = await TenantGrant.exists().where((TenantGrant.tenant == tenant) & who)
    await TenantGrant.delete().where((TenantGrant.tenant == tenant) & who)
    access_changed()
    return bool(existing)


async def grants(tenant: UUID) -> list[dict[str, object]]:
    """A tenant's grants: `{"user"|"team": name, "role": label}`."""
    rows = await TenantGrant.select(
        TenantGrant.role,
        TenantGrant.user.username.as_alias("username"),
        TenantGrant.team.name.as_alias("team_name"),
    ).where(TenantGrant.tenant == tenant)
    result: list[dict[str, object]] = []
    for r in rows:
        entry: dict[str, object] = {"role": Role(r["role"]).label}
        if r["username"]:
            entry["user"] = r["username"]
        else:
            entry["team"] = r["team_name"]
        result.append(entry)
    return sorted(result, key=lambda e: (str(e.get("user", "")), str(e.get("team", ""))))


async def all_tenants() -> dict[UUID, TenantRef]:
    """Every tenant of every org (small: cached by the access cache)."""
    rows = await Tenant.select(
        Tenant.id, Tenant.org, Tenant.slug, Tenant.name, Tenant.org.slug.as_alias("org_slug")
    )
    return {
        UUID(str(r["id"])): TenantRef(
            UUID(str(r["id"])), UUID(str(r["org"])), r["slug"], r["name"], r["org_slug"]
        )
        for r in rows
    }


async def create_tenant(org: UUID, slug: str, name: str = "") -> TenantRef:
    """A new tenant (workspace) of the org."""
    check_slug(slug, "tenant name")
    if await Tenant.exists().where((Tenant.org == org) & (Tenant.slug == slug)):
        raise AlreadyExists(f"a tenant named '{slug}' already exists in this organization")
    org_row = await Organization.select(Organization.slug).where(Organization.id == org).first()
    if org_row is None:
        raise NotFound("no such organization")
    tenant_id = uuid.uuid4()
    await Tenant.insert(
        Tenant(id=tenant_id, org=org, slug=slug, name=name or slug, created_at=datetime.now(UTC))
    )
    access_changed()
    return TenantRef(tenant_id, org, slug, name or slug, org_row["slug"])


async def user_roles(user_id: UUID) -> tuple[dict[UUID, OrgRole], dict[UUID, Role]]:
    """(org roles, tenant roles) of a user: a tenant role is the highest of the direct grant and the
    user's teams' grants; org owners and admins are admin of every tenant of their org; grants in an
    org the user is no longer a member of count for nothing."""
    org_roles = {
        UUID(str(r["org"])): OrgRole(r["role"])
        for r in await Membership.select(Membership.org, Membership.role).where(Membership.user == user_id)
    }
    if not org_roles:
        return {}, {}
    tenants = await all_tenants()
    roles: dict[UUID, Role] = {}
    for tenant in tenants.values():
        if org_roles.get(tenant.org, OrgRole.MEMBER) >= OrgRole.ADMIN and tenant.org in org_roles:
            roles[tenant.id] = Role.ADMIN
    team_ids = [r["team"] for r in await TeamMember.select(TeamMember.team).where(TeamMember.user == user_id)]
    who: Any = TenantGrant.user == user_id
    if team_ids:
        who = who | TenantGrant.team.is_in(team_ids)
    for row in await TenantGrant.select(TenantGrant.tenant, TenantGrant.role).where(who):
        tenant_id = UUID(str(row["tenant"]))
        ref = tenants.get(tenant_id)
        if ref is None or ref.org not in org_roles:
            continue
        roles[tenant_id] = max(roles.get(tenant_id, Role.VIEWER), Role(row["role"]))
    return org_roles, roles


async def any_user() -> bool:
    """Whether any user exists (the first start creates `admin`)."""
    return bool(await User.exists())
