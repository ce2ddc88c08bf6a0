"""The UI's account pages: members, teams, API keys, agent tokens, secrets and the audit log.

Thin adapters like the other pages: they read through the services the REST handlers use
(controller.orgs.people, controller.auth.keys and agent_tokens, controller.secrets.services,
controller.audit.services) and render a table; every change is made by the page's script calling
the REST API (web/static/pages/admin.js), so the UI and integrations share one code path. Each page
declares the permission it needs; a caller without it gets the HTML "Not allowed" page (403).
Values shown once (a new API key, registration token or generated password) exist only in the
answer to the browser's REST request, never in a page, and secret values in nothing at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from controller.audit import services as audit
from controller.auth.agent_tokens import list_tokens
from controller.auth.caller import Caller
from controller.auth.keys import list_keys
from controller.auth.permissions import OrgRole, Permission, Role, requires
from controller.deps import Deps
from controller.orgs import people
from controller.orgs.people import TenantRef
from controller.pipelines.services import list_pipelines
from controller.repos.services import list_repositories
from controller.secrets import services as secrets

ROLES = [role.label for role in Role]
AUDIT_PAGE = 50


async def _org_tenants(deps: Deps, caller: Caller) -> list[TenantRef]:
    """The tenants of the caller's organization, by path."""
    tenants = await deps.authenticator.tenants()
    return sorted((t for t in tenants.values() if t.org == caller.org), key=lambda t: t.path)


async def _grants_by_grantee(tenants: list[TenantRef]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every grant in these tenants, by (`user`|`team`, name): [{tenant, role}]."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for tenant in tenants:
        for grant in await people.grants(tenant.id):
            kind = "user" if "user" in grant else "team"
            found.setdefault((kind, str(grant[kind])), []).append({"tenant": tenant, "role": grant["role"]})
    return found


def _org_roles(caller: Caller) -> list[str]:
    """The org roles the caller may hand out (only owners make owners)."""
    roles = [OrgRole.MEMBER, OrgRole.ADMIN] + ([OrgRole.OWNER] if caller.org_role == OrgRole.OWNER else [])
    return [role.label for role in roles]


def _key_view(row: dict[str, Any], tenants: dict[UUID, TenantRef], now: datetime) -> dict[str, Any]:
    """An API key row as the keys page shows it (no value: there is none to show)."""
    role = int(row.get("role") or 0)
    tenant = tenants.get(row["tenant"]) if row.get("tenant") else None
    expires = row.get("expires_at")
    if isinstance(expires, datetime) and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # SQLite gives naive UTC
    if row.get("revoked_at") is not None:
        state = "revoked"
    elif isinstance(expires, datetime) and expires <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "prefix": row["prefix"],
        "role": Role(role).label if role else "",
        "tenant": tenant.path if tenant else "",
        "created_by": row.get("created_by", ""),
        "created_at": row.get("created_at"),
        "expires_at": expires,
        "last_used_at": row.get("last_used_at"),
        "state": state,
    }


class AccountPagesController(Controller):
    """Pages for managing who may do what: each declares its own permission."""

    path = "/"
    include_in_schema = False

    @get("/members", opt=requires(Permission.ORG_ADMIN))
    async def members(self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]) -> Template:
        """The organization's members: org role, teams, tenant grants; create, change, disable, remove."""
        tenants = await _org_tenants(deps, caller)
        grants = await _grants_by_grantee(tenants)
        teams = await people.teams(caller.org)
        rows = [
            {
                "user": user,
                "role": role.label,
                "grants": grants.get(("user", user.username), []),
                "teams": [name for _, name, members in teams if user.username in members],
                "is_self": user.id == caller.user_id,
                "can_change": role is not OrgRole.OWNER or caller.org_role == OrgRole.OWNER,
            }
            for user, role in await people.members(caller.org)
        ]
        context = {
            "rows": rows,
            "tenants": tenants,
            "roles": ROLES,
            "org_roles": _org_roles(caller),
            "active": "members",
        }
        return Template(template_name="members.html", context=context)

    @get("/teams", opt=requires(Permission.ORG_ADMIN))
    async def teams(self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]) -> Template:
        """The organization's teams: members and tenant grants; create, add/remove members, grant."""
        tenants = await _org_tenants(deps, caller)
        grants = await _grants_by_grantee(tenants)
        rows = [
            {"id": str(team_id), "name": name, "members": members, "grants": grants.get(("team", name), [])}
            for team_id, name, members in await people.teams(caller.org)
        ]
        usernames = [user.username for user, _ in await people.members(caller.org)]
        context = {
            "rows": rows,
            "tenants": tenants,
            "roles": ROLES,
            "usernames": usernames,
            "active": "teams",
        }
        return Template(template_name="teams.html", context=context)

    @get("/apikeys", opt=requires(Permission.AUTHENTICATED))
    async def api_keys(self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]) -> Template:
        """Your API keys (and, for tenant admins, the tenant's service keys); create and revoke."""
        tenants = await deps.authenticator.tenants()
        now = datetime.now(UTC)
        mine = await list_keys(caller.org, user=caller.user_id) if caller.user_id is not None else []
        service = caller.role is not None and caller.role >= Role.ADMIN
        service_rows = await list_keys(caller.org, tenant=caller.tenant) if service else []
        current = tenants.get(caller.tenant)
        context = {
            "keys": [_key_view(r, tenants, now) for r in mine],
            "service_keys": [_key_view(r, tenants, now) for r in service_rows],
            "show_service": service,
            "tenant": current.path if current and caller.role else "",
            "roles": ROLES,
            "active": "apikeys",
        }
        return Template(template_name="apikeys.html", context=context)

    @get("/agent-tokens", opt=requires(Permission.MANAGE))
    async def agent_tokens(self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]) -> Template:
        """Registration tokens of this tenant and the org-wide ones (never values); create, revoke."""
        tenants = await deps.authenticator.tenants()
        rows = await list_tokens(caller.org, caller.tenant)
        tokens = [
            {
                "id": str(r["id"]),
                "name": r["name"],
                "prefix": r["prefix"],
                "org_wide": r["tenant"] is None,
                "created_by": r["created_by"],
                "created_at": r["created_at"],
                "revoked": r["revoked_at"] is not None,
            }
            for r in rows
        ]
        current = tenants.get(caller.tenant)
        context = {"tokens": tokens, "tenant": current.path if current else "", "active": "agent-tokens"}
        return Template(template_name="agent_tokens.html", context=context)

    @get("/secrets", opt=requires(Permission.MANAGE))
    async def secrets(self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]) -> Template:
        """The tenant's secrets by name, scope and last change; set, replace, delete. Never a value."""
        tenants = await deps.authenticator.tenants()
        pipelines = await list_pipelines(caller.tenant)
        box = deps.secret_box
        repositories = await list_repositories(caller.tenant, box) if box is not None else []
        current = tenants.get(caller.tenant)
        context = {
            "secrets": await secrets.list_secrets(caller.tenant),
            "pipelines": [(str(p["id"]), p["name"]) for p in pipelines],
            "repositories": [(str(r.id), r.name) for r in repositories],
            "available": box is not None,
            "tenant": current.path if current else "",
            "active": "secrets",
        }
        return Template(template_name="secrets.html", context=context)

    @get("/audit", opt=requires(Permission.ADMIN))
    async def audit_log(
        self,
        deps: NamedDependency[Deps],
        caller: NamedDependency[Caller],
        before: FromQuery[int | None] = None,
    ) -> Template:
        """Audit events, newest first, a page at a time: the tenant's (org admins: the whole org's)."""
        tenants = await deps.authenticator.tenants()
        whole_org = caller.is_org_admin
        events = await audit.events(caller.org, None if whole_org else caller.tenant, AUDIT_PAGE, before)
        for event in events:
            tenant = tenants.get(UUID(event["tenant"])) if event["tenant"] else None
            event["tenant_path"] = tenant.path if tenant else ""
        current = tenants.get(caller.tenant)
        context = {
            "events": events,
            "older": f"/audit?before={events[-1]['id']}" if len(events) == AUDIT_PAGE else None,
            "newest": "/audit" if before is not None else None,
            "whole_org": whole_org,
            "tenant": current.path if current else "",
            "active": "audit",
        }
        return Template(template_name="audit.html", context=context)
