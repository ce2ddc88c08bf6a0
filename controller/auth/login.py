"""Doors of identity: the login page, sign out, the tenant switch, API keys, `me`, the audit log.

Thin adapters over controller.auth.commands (and the org/people services); the policy point has
already authenticated and authorized every request by the permission each handler declares.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, URLEncodedBody
from litestar.response import Redirect, Template

from controller.audit import services as audit
from controller.auth import commands, sessions
from controller.auth.caller import Caller
from controller.auth.keys import list_keys
from controller.auth.permissions import Permission, Role, requires
from controller.auth.policy import SESSION_COOKIE
from controller.deps import Deps
from controller.errors import Forbidden, Invalid, TooManyRequests, Unauthenticated


def _oidc_label(deps: Deps) -> str:
    return deps.oidc.settings.label if deps.oidc is not None else ""


def _safe_next(target: str) -> str:
    """Only same-site paths: never an open redirect to another host."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else ""


@dataclass
class LoginForm:
    """The login page's form."""

    username: str = ""
    password: str = ""
    next: str = "/"


class LoginController(Controller):
    """The login page and signing in and out of the web UI."""

    path = "/"
    include_in_schema = False

    @get("/login", opt=requires(Permission.PUBLIC))
    async def login_page(self, next: FromQuery[str] = "/") -> Template:
        """The login form."""
        return Template(
            template_name="login.html", context={"next": _safe_next(next), "error": "", "username": ""}
        )

    @post("/login", opt=requires(Permission.PUBLIC), status_code=303)
    async def login(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        data: URLEncodedBody[LoginForm],
    ) -> Response[Any]:
        """Check the password, start a new session (new id), go where the user was going."""
        address = _address(request)
        try:
            user = await commands.sign_in(deps.throttle, data.username, data.password, address, deps.org)
        except (Unauthenticated, TooManyRequests) as exc:
            status = 429 if isinstance(exc, TooManyRequests) else 401
            context = {
                "next": _safe_next(data.next),
                "error": exc.message,
                "username": data.username,
                "oidc_label": _oidc_label(deps),
            }
            return Template(template_name="login.html", context=context, status_code=status)
        cookie, _ = await commands.open_session(user, address)
        response: Response[Any] = Redirect(path=_safe_next(data.next), status_code=303)
        set_session_cookie(response, cookie, deps.secure_cookies or request.url.scheme == "https")
        return response

    @post("/logout", opt=requires(Permission.AUTHENTICATED), status_code=303)
    async def logout(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> Response[Any]:
        """End the session: the cookie stops working at once."""
        principal = await _session_principal(deps, request)
        if principal is not None and principal.session is not None:
            await commands.close_session(_caller(request), principal.session.id)
        response: Response[Any] = Redirect(path="/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @post("/ui/tenant", opt=requires(Permission.AUTHENTICATED), status_code=303)
    async def switch_tenant(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        """Remember the tenant the user picked for this session; back to the page it was picked on."""
        caller = _caller(request)
        try:
            tenant = UUID(data.get("tenant", ""))
        except ValueError:
            raise Invalid("pick a tenant from the list") from None
        if tenant not in caller.roles:
            raise Forbidden("you have no role in that tenant")
        principal = await _session_principal(deps, request)
        if principal is None or principal.session is None:
            raise Invalid("switching tenants is for signed-in browsers; API clients send X-BuildIt-Tenant")
        await sessions.set_session_tenant(principal.session.id, tenant)
        return Redirect(path=_safe_next(data.get("next", "/")), status_code=303)


def set_session_cookie(response: Response[Any], cookie: str, secure: bool) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS."""
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=secure, path="/")


def _caller(request: Request[Any, Any, Any]) -> Caller:
    caller = request.scope.get("state", {}).get("caller")
    assert isinstance(caller, Caller)
    return caller


async def _session_principal(deps: Deps, request: Request[Any, Any, Any]) -> Any:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or request.headers.get("authorization"):
        return None
    from controller.auth.authenticate import utcnow

    return await deps.authenticator.by_session(cookie, utcnow())


@dataclass
class TokenRequest:
    """Body of POST /api/v1/auth/token."""

    #: What the key is for, e.g. "buildit CLI on laptop".
    name: str = "buildit CLI"


@dataclass
class NewKey:
    """Body of POST /api/v1/apikeys."""

    name: str
    #: Personal keys: optionally narrowed to the current tenant; with `service`, a tenant key.
    this_tenant_only: bool = False
    #: A ceiling (personal) or the role (service): viewer, developer, maintainer, admin.
    role: str | None = None
    service: bool = False
    expires_at: datetime | None = None


def _key_json(row: dict[str, Any]) -> dict[str, Any]:
    role = int(row.get("role") or 0)
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "prefix": row["prefix"],
        "role": Role(role).label if role else None,
        "tenant": str(row["tenant"]) if row.get("tenant") else None,
        "service": row.get("user") is None,
        "created_by": row.get("created_by", ""),
        "created_at": row["created_at"].isoformat() if row.get("created_at") else None,
        "expires_at": row["expires_at"].isoformat() if row.get("expires_at") else None,
        "last_used_at": row["last_used_at"].isoformat() if row.get("last_used_at") else None,
        "revoked": row.get("revoked_at") is not None,
    }


class AuthApiController(Controller):
    """REST: a key for the CLI from a user name and password, who am I, API keys, the audit log."""

    path = "/api/v1"
    tags = ["auth"]

    @post("/auth/token", opt=requires(Permission.PUBLIC), status_code=201)
    async def token(
        self, deps: NamedDependency[Deps], request: Request[Any, Any, Any], data: JSONBody[TokenRequest]
    ) -> dict[str, Any]:
        """Exchange `Authorization: Basic user:password` for a personal API key (`buildit login`)."""
        username, password = _basic(request.headers.get("authorization", ""))
        address = _address(request)
        user = await commands.sign_in(deps.throttle, username, password, address, deps.org)
        caller = Caller("user", user.username, deps.org, deps.tenant, None, user_id=user.id, address=address)
        org_roles, roles = await deps.authenticator.user_roles(user.id)
        caller.roles = roles
        if org_roles:
            caller.org = next(iter(org_roles))
        value, record = await commands.create_personal_key(caller, data.name or "buildit CLI")
        return {"key": value, "id": str(record.id), "prefix": record.prefix, "user": user.username}

    @get("/me", opt=requires(Permission.AUTHENTICATED))
    async def me(self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]) -> dict[str, Any]:
        """Who the request acts as, in which tenant, and every tenant it can switch to."""
        tenants = await deps.authenticator.tenants()
        return {
            "name": caller.name,
            "kind": caller.kind,
            "tenant": tenants[caller.tenant].path if caller.tenant in tenants and caller.role else None,
            "role": caller.role.label if caller.role else None,
            "tenants": sorted(
                (
                    {"id": str(t), "path": tenants[t].path, "role": r.label}
                    for t, r in caller.roles.items()
                    if t in tenants
                ),
                key=lambda item: item["path"],
            ),
        }

    @get("/apikeys", opt=requires(Permission.AUTHENTICATED))
    async def list_api_keys(
        self, caller: NamedDependency[Caller], service: FromQuery[bool] = False
    ) -> dict[str, Any]:
        """Your personal keys, or (`?service=true`, tenant admins) the tenant's service keys; never values."""
        if service:
            require_tenant_admin(caller)
            rows = await list_keys(caller.org, tenant=caller.tenant)
        elif caller.user_id is None:
            rows = []
        else:
            rows = await list_keys(caller.org, user=caller.user_id)
        return {"keys": [_key_json(r) for r in rows]}

    @post("/apikeys", opt=requires(Permission.AUTHENTICATED), status_code=201)
    async def create_api_key(self, caller: NamedDependency[Caller], data: JSONBody[NewKey]) -> dict[str, Any]:
        """A new key, shown once in this answer (`key`); only its hash is kept."""
        role = _role(data.role)
        if data.service:
            require_tenant_admin(caller)
            if role is None:
                raise Invalid("a service key needs a role: viewer, developer, maintainer or admin")
            value, record = await commands.create_service_key(caller, data.name, role, data.expires_at)
        else:
            tenant = caller.tenant if data.this_tenant_only else None
            value, record = await commands.create_personal_key(
                caller, data.name, tenant=tenant, role=role, expires_at=data.expires_at
            )
        return {
            "key": value,
            "id": str(record.id),
            "prefix": record.prefix,
            "name": record.name,
            "role": record.role.label if record.role else None,
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        }

    @delete("/apikeys/{key_id:uuid}", opt=requires(Permission.AUTHENTICATED), status_code=204)
    async def revoke_api_key(
        self, caller: NamedDependency[Caller], key_id: FromPath[UUID], service: FromQuery[bool] = False
    ) -> None:
        """Revoke a key at once."""
        if service:
            require_tenant_admin(caller)
        await commands.revoke_key(caller, key_id, service=service)

    @get("/audit", opt=requires(Permission.ADMIN))
    async def audit_log(
        self,
        caller: NamedDependency[Caller],
        limit: FromQuery[int] = 100,
        before: FromQuery[int | None] = None,
    ) -> dict[str, Any]:
        """The tenant's audit events (and the org's), newest first; `before` pages back by id."""
        if not 1 <= limit <= 500:
            raise Invalid("limit must be between 1 and 500")
        events = await audit.events(caller.org, caller.tenant, limit, before)
        return {"events": events}


def require_tenant_admin(caller: Caller) -> None:
    """Service keys belong to the tenant: only its admins list, create or revoke them."""
    if caller.role is None or caller.role < Role.ADMIN:
        raise Forbidden("service keys of a tenant are managed by its admins")


def _role(text: str | None) -> Role | None:
    if text is None or text == "":
        return None
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        raise Unauthenticated("send the user name and password as `Authorization: Basic …`")
    try:
        username, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    return username, password


LOGIN_HANDLERS: list[Any] = [LoginController, AuthApiController]
