"""REST: members, teams, tenants, grants and agent registration tokens (adapters over orgs.commands)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from controller.auth.agent_tokens import list_tokens
from controller.auth.caller import Caller
from controller.auth.permissions import OrgRole, Permission, Role, requires
from controller.errors import Invalid
from controller.orgs import commands, people


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _org_role(text: str) -> OrgRole:
    try:
        return OrgRole.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _role(text: str) -> Role:
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


@dataclass
class NewUser:
    """Body of POST /api/v1/users. Without `password`, one is generated and answered once."""

    username: str
    role: str = "member"
    password: str | None = None
    display_name: str = ""
    email: str = ""


@dataclass
class UserChange:
    """Body of PUT /api/v1/users/{username}: a new org role, and/or disable (true) or enable (false)."""

    role: str | None = None
    disabled: bool | None = None


@dataclass
class NewTeam:
    """Body of POST /api/v1/teams."""

    name: str
    members: list[str] = field(default_factory=list)


@dataclass
class TeamMembers:
    """Body of PUT /api/v1/teams/{team}/members."""

    members: list[str]


@dataclass
class NewTenant:
    """Body of POST /api/v1/tenants."""

    slug: str
    name: str = ""


@dataclass
class Grant:
    """Body of PUT /api/v1/grants: a role for one user or one team in the current tenant."""

    role: str
    user: str | None = None
    team: str | None = None


@dataclass
class NewAgentToken:
    """Body of POST /api/v1/agent-tokens."""

    name: str
    #: Serve every tenant of the organization (org owners and admins only).
    org_wide: bool = False


@dataclass
class PasswordChange:
    """Body of PUT /api/v1/me/password."""

    current: str
    new: str


class OrgController(Controller):
    """Members and teams of the caller's organization; its tenants."""

    path = "/api/v1"
    tags = ["organization"]
    opt = requires(Permission.ORG_ADMIN)

    @get("/users")
    async def list_users(self, caller: NamedDependency[Caller]) -> dict[str, Any]:
        """Members with their organization roles."""
        members = await people.members(caller.org)
        return {
            "users": [
                {
                    "username": u.username,
                    "display_name": u.display_name,
                    "email": u.email,
                    "role": r.label,
                    "disabled": u.disabled,
                }
                for u, r in members
            ]
        }

    @post("/users", status_code=201)
    async def create_user(self, caller: NamedDependency[Caller], data: JSONBody[NewUser]) -> dict[str, Any]:
        """A new member; a generated password is in the answer once (when none was given)."""
        user, generated = await commands.add_user(
            caller, data.username, _org_role(data.role), data.password, data.display_name, data.email
        )
        answer: dict[str, Any] = {"username": user.username, "role": _org_role(data.role).label}
        if generated:
            answer["password"] = generated
        return answer

    @put("/users/{username:str}")
    async def change_user(
        self, caller: NamedDependency[Caller], username: FromPath[str], data: JSONBody[UserChange]
    ) -> dict[str, Any]:
        """Change a member's organization role (`role`), or disable / enable them (`disabled`)."""
        if data.role is None and data.disabled is None:
            raise Invalid('send "role" (owner, admin, member) and/or "disabled" (true or false)')
        answer: dict[str, Any] = {"username": username}
        if data.role is not None:
            await commands.set_org_role(caller, username, _org_role(data.role))
            answer["role"] = _org_role(data.role).label
        if data.disabled is not None:
            await commands.set_disabled(caller, username, data.disabled)
            answer["disabled"] = data.disabled
        return answer

    @delete("/users/{username:str}", status_code=204)
    async def remove_user(self, caller: NamedDependency[Caller], username: FromPath[str]) -> None:
        """Remove a member from the organization."""
        await commands.remove_member(caller, username)

    @get("/teams")
    async def list_teams(self, caller: NamedDependency[Caller]) -> dict[str, Any]:
        """Teams with their members."""
        teams = await people.teams(caller.org)
        return {"teams": [{"id": str(t), "name": n, "members": m} for t, n, m in teams]}

    @post("/teams", status_code=201)
    async def create_team(self, caller: NamedDependency[Caller], data: JSONBody[NewTeam]) -> dict[str, Any]:
        """A new team."""
        team = await commands.create_team(caller, data.name, data.members)
        return {"id": str(team), "name": data.name, "members": sorted(data.members)}

    @put("/teams/{team:str}/members")
    async def set_members(
        self, caller: NamedDependency[Caller], team: FromPath[str], data: JSONBody[TeamMembers]
    ) -> dict[str, Any]:
        """Replace a team's members."""
        await commands.set_team_members(caller, team, data.members)
        return {"name": team, "members": sorted(data.members)}

    @put("/teams/{team:str}/members/{username:str}")
    async def add_member(
        self, caller: NamedDependency[Caller], team: FromPath[str], username: FromPath[str]
    ) -> dict[str, Any]:
        """Put one member in a team (the team by name or id)."""
        await commands.add_team_member(caller, team, username)
        return {"team": team, "member": username}

    @delete("/teams/{team:str}/members/{username:str}", status_code=204)
    async def remove_member_from_team(
        self, caller: NamedDependency[Caller], team: FromPath[str], username: FromPath[str]
    ) -> None:
        """Take one member out of a team."""
        await commands.remove_team_member(caller, team, username)

    @delete("/teams/{team:str}", status_code=204)
    async def delete_team(self, caller: NamedDependency[Caller], team: FromPath[str]) -> None:
        """Delete a team."""
        await commands.delete_team(caller, team)


class TenantController(Controller):
    """Grants and agent registration tokens of the caller's current tenant; tenants one can see."""

    path = "/api/v1"
    tags = ["organization"]

    @get("/tenants", opt=requires(Permission.AUTHENTICATED))
    async def list_tenants(self, caller: NamedDependency[Caller]) -> dict[str, Any]:
        """The tenants the caller has a role in (send one as `X-BuildIt-Tenant` to act in it)."""
        return {
            "tenants": [{"id": str(t.id), "path": t.path, "role": t.role.label} for t in caller.tenant_list]
        }

    @post("/tenants", status_code=201, opt=requires(Permission.ORG_ADMIN))
    async def create_tenant(
        self, caller: NamedDependency[Caller], data: JSONBody[NewTenant]
    ) -> dict[str, Any]:
        """A new tenant of the organization (org owners and admins)."""
        tenant = await commands.create_tenant(caller, data.slug, data.name)
        return {"id": str(tenant.id), "path": tenant.path, "name": tenant.name}

    @get("/grants", opt=requires(Permission.ADMIN))
    async def list_grants(self, caller: NamedDependency[Caller]) -> dict[str, Any]:
        """Who has which role in this tenant (org owners and admins are admins without a grant)."""
        return {"grants": await people.grants(caller.tenant)}

    @put("/grants", opt=requires(Permission.ADMIN))
    async def set_grant(self, caller: NamedDependency[Caller], data: JSONBody[Grant]) -> dict[str, Any]:
        """Give a user or team a role here (replacing their earlier grant)."""
        await commands.set_grant(caller, _role(data.role), username=data.user, team=data.team)
        return {"user": data.user, "team": data.team, "role": _role(data.role).label}

    @delete("/grants", opt=requires(Permission.ADMIN), status_code=204)
    async def remove_grant(
        self,
        caller: NamedDependency[Caller],
        user: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> None:
        """Remove a user's (`?user=`) or team's (`?team=`) grant here."""
        await commands.remove_grant(caller, username=user, team=team)

    @get("/agent-tokens", opt=requires(Permission.MANAGE))
    async def list_agent_tokens(self, caller: NamedDependency[Caller]) -> dict[str, Any]:
        """This tenant's registration tokens and the org-wide ones (never their values)."""
        rows = await list_tokens(caller.org, caller.tenant)
        return {
            "tokens": [
                {
                    "id": str(r["id"]),
                    "name": r["name"],
                    "prefix": r["prefix"],
                    "org_wide": r["tenant"] is None,
                    "created_by": r["created_by"],
                    "created_at": _iso(r["created_at"]),
                    "revoked": r["revoked_at"] is not None,
                }
                for r in rows
            ]
        }

    @post("/agent-tokens", opt=requires(Permission.MANAGE), status_code=201)
    async def create_agent_token(
        self, caller: NamedDependency[Caller], data: JSONBody[NewAgentToken]
    ) -> dict[str, Any]:
        """A registration token (in this answer once): `buildit agent --registration-token …`."""
        value, token_id = await commands.create_agent_token(caller, data.name, data.org_wide)
        return {"id": str(token_id), "name": data.name, "token": value, "org_wide": data.org_wide}

    @delete("/agent-tokens/{token_id:uuid}", opt=requires(Permission.MANAGE), status_code=204)
    async def revoke_agent_token(self, caller: NamedDependency[Caller], token_id: FromPath[UUID]) -> None:
        """Agents can no longer enrol with this token."""
        await commands.revoke_agent_token(caller, token_id)

    @put("/me/password", opt=requires(Permission.AUTHENTICATED), status_code=204)
    async def change_password(self, caller: NamedDependency[Caller], data: JSONBody[PasswordChange]) -> None:
        """Change your password (your other sessions end)."""
        await commands.change_password(caller, data.current, data.new)


ORG_HANDLERS: list[Any] = [OrgController, TenantController]
