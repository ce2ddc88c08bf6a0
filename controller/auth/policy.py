"""The policy point: who is calling, and may they do what the route declares.

Every Litestar handler declares a `Permission` in its `opt` (`requires(...)`); `Policy.guard` runs
before the handler (and before any lookup it would make): it authenticates the request (a Bearer
API key, else the session cookie), picks the tenant the request acts in, checks the declared
permission, and leaves the `Caller` in the connection's state for the `caller` dependency.
A handler that declares nothing is refused (fail closed); a test walks the route table too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from controller.auth.authenticate import Authenticator, Principal, utcnow
from controller.auth.caller import Caller, TenantChoice
from controller.auth.permissions import MIN_ROLE, OPT_KEY, OrgRole, Permission, Role, role_allows
from controller.errors import Forbidden, NotFound, Unauthenticated

STATE_KEY = "caller"
SESSION_COOKIE = "buildit_session"
TENANT_HEADER = "x-buildit-tenant"
OPEN = frozenset({Permission.PUBLIC, Permission.WEBHOOK})


def declared(handler: BaseRouteHandler) -> Permission | None:
    """The permission a handler declares (merged from its controller and router), or None."""
    value = handler.opt.get(OPT_KEY)
    return value if isinstance(value, Permission) else None


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of `Authorization: Bearer …`, if any."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Policy:
    """Authentication plus the permission check, for every HTTP route, page and socket."""

    def __init__(
        self,
        authenticator: Authenticator,
        default_org: UUID,
        default_tenant: UUID,
        agent_auth: Callable[[str], Awaitable[UUID | None]] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.default_org = default_org
        self.default_tenant = default_tenant
        #: Finds the agent of an agent token (for the Git routes agents fetch from).
        self.agent_auth = agent_auth

    async def guard(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        """Litestar guard: refuse before the handler runs; otherwise record the caller."""
        permission = declared(handler)
        if permission is None:
            raise Forbidden(f"{connection.url.path} declares no permission; it is closed until it does")
        if permission in OPEN:
            connection.scope.setdefault("state", {})[STATE_KEY] = self.anonymous(connection)
            return
        if permission is Permission.AGENT and self.agent_auth is not None:
            token = bearer(connection)
            agent = await self.agent_auth(token) if token else None
            if agent is not None:
                connection.scope.setdefault("state", {})[STATE_KEY] = Caller(
                    "agent",
                    f"agent:{agent}",
                    self.default_org,
                    self.default_tenant,
                    None,
                    address=_address(connection),
                    agent_id=agent,
                )
                return
        principal = await self.principal(connection)
        if principal is None:
            raise Unauthenticated(
                "sign in first: send `Authorization: Bearer <API key>` (create one with `buildit login`) "
                "or use the web UI's login page"
            )
        caller = await self.caller(connection, principal)
        # Recorded before the check: a refused page still says who is signed in (and offers the
        # tenant switcher); the handler itself never runs for a refused caller.
        connection.scope.setdefault("state", {})[STATE_KEY] = caller
        self.check(caller, permission)

    async def principal(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
        """The request's principal: a Bearer API key wins over the session cookie."""
        now = utcnow()
        token = bearer(connection)
        if token is not None:
            return await self.authenticator.by_key(token, now)
        cookie = connection.cookies.get(SESSION_COOKIE)
        if cookie:
            return await self.authenticator.by_session(cookie, now)
        return None

    def anonymous(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
        """The caller of an open route."""
        return Caller(
            "anonymous",
            "anonymous",
            self.default_org,
            self.default_tenant,
            None,
            address=_address(connection),
        )

    async def caller(self, connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> Caller:
        """The principal acting in one tenant: the one asked for (header or `?tenant=`), else the
        session's choice, else the default tenant, else the first the principal can see."""
        tenants = await self.authenticator.tenants()
        asked = connection.headers.get(TENANT_HEADER) or connection.query_params.get("tenant")
        tenant: UUID | None = None
        if asked:
            tenant = _find_tenant(asked.strip(), principal, tenants)
            if tenant is None:
                raise NotFound(f"no tenant '{asked}' (or you have no role in it)")
        elif principal.session is not None and principal.session.tenant in principal.roles:
            tenant = principal.session.tenant
        elif self.default_tenant in principal.roles:
            tenant = self.default_tenant
        elif principal.roles:
            tenant = min(principal.roles, key=lambda t: tenants[t].path if t in tenants else str(t))
        if tenant is None:
            org = next(iter(principal.org_roles), self.default_org)
            role = None
            tenant = self.default_tenant
        else:
            org = tenants[tenant].org if tenant in tenants else self.default_org
            role = principal.roles.get(tenant)
        caller = Caller(
            "user" if principal.kind == "user" else "key",
            principal.name,
            org,
            tenant,
            role,
            user_id=principal.user_id,
            key_id=principal.key_id,
            roles=principal.roles,
            org_role=int(principal.org_roles[org]) if org in principal.org_roles else None,
            address=_address(connection),
        )
        caller.tenant_list = sorted(
            (TenantChoice(t, tenants[t].path, r) for t, r in principal.roles.items() if t in tenants),
            key=lambda choice: choice.path,
        )
        return caller

    @staticmethod
    def check(caller: Caller, permission: Permission) -> None:
        """Forbidden unless the caller holds `permission` in its tenant (or org)."""
        if permission is Permission.AUTHENTICATED:
            return
        if permission is Permission.ORG_ADMIN:
            if caller.org_role is not None and caller.org_role >= OrgRole.ADMIN:
                return
            raise Forbidden("this needs an organization owner or admin")
        if permission is Permission.AGENT:
            # Users reach agent routes (the Git mirrors) with read access; the route checks it in
            # the tenant of what is read (controller.repos.git_http).
            permission = Permission.READ
        if role_allows(caller.role, permission):
            return
        if caller.role is None and not caller.roles:
            raise Forbidden(
                "you have no role in any tenant yet: ask an admin of your organization for a grant"
            )
        needed = MIN_ROLE.get(permission, Role.ADMIN).label
        have = caller.role.label if caller.role else "no role"
        raise Forbidden(f"this needs the {needed} role in this tenant; you have {have}")


def allows(caller: Caller | None, permission: Permission) -> bool:
    """Whether `caller` holds `permission`, by the same rule the guard applies: pages use it to hide
    what the caller cannot do (the server still checks every request)."""
    if permission in OPEN:
        return True
    if caller is None or caller.kind == "anonymous":
        return False
    if permission is Permission.AGENT:
        return caller.kind == "agent"
    try:
        Policy.check(caller, permission)
    except Forbidden:
        return False
    return True


def _find_tenant(asked: str, principal: Principal, tenants: dict[UUID, Any]) -> UUID | None:
    """A tenant the principal can see, by `org/slug`, unique `slug`, or id."""
    visible = [tenants[t] for t in principal.roles if t in tenants]
    try:
        as_id = UUID(asked)
    except ValueError:
        as_id = None
    for ref in visible:
        if ref.id == as_id or ref.path == asked:
            return UUID(str(ref.id))
    by_slug = [ref for ref in visible if ref.slug == asked]
    return UUID(str(by_slug[0].id)) if len(by_slug) == 1 else None


def _address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = connection.client
    return client.host if client else ""


def caller_of(scope: Any) -> Caller:
    """The request's caller as the policy point established it (the `caller` dependency; `scope`
    is the ASGI scope of a request or a socket)."""
    caller = scope.get("state", {}).get(STATE_KEY)
    if not isinstance(caller, Caller):
        raise Forbidden("no caller: the route was not checked by the policy point")
    return caller
