"""Doors of OIDC sign-in: `/login/oidc` sends the browser to the provider, `/login/oidc/callback`
brings it back with a session. The pending login (state, nonce, PKCE verifier) stays on the server,
behind a one-time cookie; it is taken out before the callback is checked, so a callback is used once.
(Pending logins live in this process: with several replicas, keep sign-ins sticky for 10 minutes.)
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Redirect

from controller.auth import commands
from controller.auth.login import _safe_next, set_session_cookie
from controller.auth.oidc import PendingLogin
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import NotFound, Unauthenticated

COOKIE = "buildit_oidc"
MAX_PENDING = 10_000
_pending: dict[str, tuple[PendingLogin, str]] = {}


def _callback_url(deps: Deps, request: Request[Any, Any, Any]) -> str:
    base = deps.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base}/login/oidc/callback"


class OidcLoginController(Controller):
    """Sign in with the configured OpenID provider."""

    path = "/login/oidc"
    include_in_schema = False
    opt = requires(Permission.PUBLIC)

    @get("/")
    async def start(
        self, deps: NamedDependency[Deps], request: Request[Any, Any, Any], next: FromQuery[str] = "/"
    ) -> Response[Any]:
        """Redirect to the provider's authorization endpoint (code flow with PKCE)."""
        if deps.oidc is None:
            raise NotFound("OIDC sign-in is not configured (BUILDIT_OIDC_ISSUER)")
        url, pending = await deps.oidc.begin(_callback_url(deps, request))
        now = time.time()
        for key in [k for k, (p, _) in _pending.items() if p.expired(now)]:
            del _pending[key]
        if len(_pending) >= MAX_PENDING:
            del _pending[min(_pending, key=lambda k: _pending[k][0].created_at)]
        handle = secrets.token_urlsafe(24)
        _pending[handle] = (pending, _safe_next(next))
        response: Response[Any] = Redirect(path=url, status_code=303)
        response.set_cookie(COOKIE, handle, httponly=True, samesite="lax", path="/login/oidc", max_age=600)
        return response

    @get("/callback")
    async def callback(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> Response[Any]:
        """Check the provider's answer, find or create the user, start a session."""
        if deps.oidc is None:
            raise NotFound("OIDC sign-in is not configured (BUILDIT_OIDC_ISSUER)")
        handle = request.cookies.get(COOKIE, "")
        entry = _pending.pop(handle, None)
        if entry is None:
            raise Unauthenticated("this sign-in expired or was already used: start again from the login page")
        pending, target = entry
        params = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
        identity = await deps.oidc.finish(pending, params)
        user = await commands.oidc_user(deps.org, identity, deps.oidc.settings.groups_claim is not None)
        address = request.client.host if request.client else ""
        cookie, _ = await commands.open_session(user, address)
        response: Response[Any] = Redirect(path=target, status_code=303)
        set_session_cookie(response, cookie, deps.secure_cookies or request.url.scheme == "https")
        response.delete_cookie(COOKIE, path="/login/oidc")
        return response
