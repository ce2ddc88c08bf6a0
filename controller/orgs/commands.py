"""Organization operations every door adapts: members, teams, tenants, grants, agent tokens.

Each checks what the policy point cannot know from the route alone (e.g. an org-wide token needs
an org admin; nobody grants more than admin; the last owner stays) and writes the audit log.
"""

from __future__ import annotations

import secrets
from uuid import UUID

from controller.audit import services as audit
from controller.auth import agent_tokens, passwords, sessions
from controller.auth.caller import Caller
from controller.auth.permissions import OrgRole, Role
from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.orgs import people
from controller.orgs.people import TenantRef, UserRef


def _org_admin(caller: Caller) -> None:
    if caller.org_role is None or caller.org_role < OrgRole.ADMIN:
        raise Forbidden("this needs an organization owner or admin")


async def add_user(
    caller: Caller,
    username: str,
    org_role: OrgRole,
    password: str | None,
    display_name: str = "",
    email: str = "",
) -> tuple[UserRef, str | None]:
    """Create a user as a member of the caller's org; returns (user, generated password or None)."""
    _org_admin(caller)
    if org_role is OrgRole.OWNER and caller.org_role != OrgRole.OWNER:
        raise Forbidden("only an owner can make another owner")
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(15)
    passwords.check_strength(password)
    user = await people.create_user(username, passwords.hash_password(password), display_name, email)
    await people.set_membership(caller.org, user.id, org_role)
    await audit.record("user.create", f"{user.username} ({org_role.label})", caller=caller, tenant=None)
    return user, generated


async def set_org_role(caller: Caller, username: str, org_role: OrgRole) -> None:
    """Change a member's org role (owners only make or unmake owners; one owner always remains)."""
    _org_admin(caller)
    user = await _member(caller, username)
    current = dict((u.id, r) for u, r in await people.members(caller.org)).get(user.id)
    if OrgRole.OWNER in (org_role, current) and caller.org_role != OrgRole.OWNER:
        raise Forbidden("only an owner can make or unmake owners")
    if current is OrgRole.OWNER and org_role is not OrgRole.OWNER:
        await _keep_an_owner(caller.org, user.id)
    await people.set_membership(caller.org, user.id, org_role)
    await audit.record("member.role", f"{user.username} -> {org_role.label}", caller=caller, tenant=None)


async def remove_member(caller: Caller, username: str) -> None:
    """Take a user out of the org (with their teams and grants there); their sessions end."""
    _org_admin(caller)
    user = await _member(caller, username)
    roles = dict((u.id, r) for u, r in await people.members(caller.org))
    if roles.get(user.id) is OrgRole.OWNER:
        if caller.org_role != OrgRole.OWNER:
            raise Forbidden("only an owner can remove an owner")
        await _keep_an_owner(caller.org, user.id)
    await people.remove_membership(caller.org, user.id)
    await sessions.revoke_user_sessions(user.id)
    await audit.record("member.remove", user.username, caller=caller, tenant=None)


async def set_disabled(caller: Caller, username: str, disabled: bool) -> None:
    """Disable a member (every session ends, no key works, no sign-in) or enable them again.

    A user is one account across organizations, so one who belongs to another organization too is
    refused (remove them from this one instead); nobody disables themselves; only owners disable owners.
    """
    _org_admin(caller)
    user = await _member(caller, username)
    if user.id == caller.user_id:
        raise Conflict("you cannot disable yourself")
    role = dict((u.id, r) for u, r in await people.members(caller.org)).get(user.id)
    if role is OrgRole.OWNER and caller.org_role != OrgRole.OWNER:
        raise Forbidden("only an owner can disable or enable an owner")
    org_roles, _ = await people.user_roles(user.id)
    if set(org_roles) - {caller.org}:
        raise Conflict(
            f"'{user.username}' belongs to another organization too: remove them from this one instead"
        )
    await people.set_disabled(user.id, disabled)
    if disabled:
        await sessions.revoke_user_sessions(user.id)
    action = "user.disable" if disabled else "user.enable"
    await audit.record(action, user.username, caller=caller, tenant=None)


async def _keep_an_owner(org: UUID, leaving: UUID) -> None:
    owners = [u for u, r in await people.members(org) if r is OrgRole.OWNER and u.id != leaving]
    if not owners:
        raise Conflict("an organization keeps at least one owner: make someone else owner first")


async def _member(caller: Caller, username: str) -> UserRef:
    user = await people.find_user(username)
    if user.id not in {u.id for u, _ in await people.members(caller.org)}:
        raise NotFound(f"no user named '{username}'")
    return user


async def create_team(caller: Caller, name: str, usernames: list[str]) -> UUID:
    """A team of members of the caller's org."""
    _org_admin(caller)
    members = [(await _member(caller, u)).id for u in usernames]
    team = await people.create_team(caller.org, name)
    await people.set_team_members(team, set(members))
    await audit.record("team.create", name, caller=caller, tenant=None)
    return team


async def set_team_members(caller: Caller, team_ref: str, usernames: list[str]) -> None:
    """Replace a team's members."""
    _org_admin(caller)
    team = await people.find_team(caller.org, team_ref)
    members = {(await _member(caller, u)).id for u in usernames}
    await people.set_team_members(team, members)
    await audit.record(
        "team.members", f"{team_ref}: {', '.join(sorted(usernames))}", caller=caller, tenant=None
    )


async def add_team_member(caller: Caller, team_ref: str, username: str) -> None:
    """Put a member in a team (no change if already there)."""
    _org_admin(caller)
    team = await people.find_team(caller.org, team_ref)
    user = await _member(caller, username)
    await people.add_team_member(team, user.id)
    name = await people.team_name(team) or team_ref
    await audit.record("team.member.add", f"{name}: {user.username}", caller=caller, tenant=None)


async def remove_team_member(caller: Caller, team_ref: str, username: str) -> None:
    """Take a member out of a team; they lose what it granted."""
    _org_admin(caller)
    team = await people.find_team(caller.org, team_ref)
    user = await _member(caller, username)
    await people.remove_team_member(team, user.id)
    name = await people.team_name(team) or team_ref
    await audit.record("team.member.remove", f"{name}: {user.username}", caller=caller, tenant=None)


async def delete_team(caller: Caller, team_ref: str) -> None:
    """Delete a team."""
    _org_admin(caller)
    await people.delete_team(await people.find_team(caller.org, team_ref))
    await audit.record("team.delete", team_ref, caller=caller, tenant=None)


async def create_tenant(caller: Caller, slug: str, name: str) -> TenantRef:
    """A new tenant of the caller's org (org owners and admins are its admins at once)."""
    _org_admin(caller)
    tenant = await people.create_tenant(caller.org, slug, name)
    await audit.record("tenant.create", tenant.path, caller=caller, tenant=tenant.id)
    return tenant


async def set_grant(caller: Caller, role: Role, *, username: str | None, team: str | None) -> None:
    """Give a user or team a role in the caller's tenant (tenant admins)."""
    user_id, team_id = await _grantee(caller, username, team)
    await people.grant(caller.tenant, role, user=user_id, team=team_id)
    who = f"user {username}" if username else f"team {team}"
    await audit.record("grant.set", f"{who} -> {role.label}", caller=caller)


async def remove_grant(caller: Caller, *, username: str | None, team: str | None) -> None:
    """Remove a user's or team's grant in the caller's tenant."""
    user_id, team_id = await _grantee(caller, username, team)
    if not await people.revoke_grant(caller.tenant, user=user_id, team=team_id):
        raise NotFound("no such grant in this tenant")
    await audit.record("grant.remove", f"user {username}" if username else f"team {team}", caller=caller)


async def _grantee(caller: Caller, username: str | None, team: str | None) -> tuple[UUID | None, UUID | None]:
    if (username is None) == (team is None):
        raise Invalid('name exactly one of "user" and "team"')
    if username is not None:
        return (await _member(caller, username)).id, None
    assert team is not None
    return None, await people.find_team(caller.org, team)


async def create_agent_token(caller: Caller, name: str, org_wide: bool) -> tuple[str, UUID]:
    """A registration token of the caller's tenant, or (org admins) of the whole org."""
    if org_wide:
        _org_admin(caller)
    value, token_id = await agent_tokens.create_token(
        caller.org, None if org_wide else caller.tenant, name, caller.name
    )
    await audit.record("agent_token.create", f"{name}{' (org-wide)' if org_wide else ''}", caller=caller)
    return value, token_id


async def revoke_agent_token(caller: Caller, token_id: UUID) -> None:
    """Revoke a registration token (org admins: any of the org's; maintainers: their tenant's)."""
    is_org_admin = caller.org_role is not None and caller.org_role >= OrgRole.ADMIN
    name = await agent_tokens.revoke_token(caller.org, None if is_org_admin else caller.tenant, token_id)
    await audit.record("agent_token.revoke", name, caller=caller)


async def change_password(caller: Caller, current: str, new: str) -> None:
    """A user changes their own password (knowing the current one); other sessions end."""
    if caller.user_id is None:
        raise Forbidden("only a signed-in user has a password")
    row = await people.user_login_row(caller.name)
    if row is None or not passwords.verify_password(str(row["password_hash"]), current):
        raise Invalid("the current password is wrong")
    passwords.check_strength(new)
    await people.set_password_hash(caller.user_id, passwords.hash_password(new))
    await sessions.revoke_user_sessions(caller.user_id)
    await audit.record("user.password", caller.name, caller=caller, tenant=None)
