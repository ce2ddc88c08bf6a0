"""CSRF protection for cookie-authenticated requests (Litestar's double-submit-cookie middleware).

Browsers attach the session cookie to cross-site requests; they cannot attach an `Authorization`
header without a CORS preflight this server never grants. So a request that carries an
`Authorization` header is not cookie-authenticated (the policy point ignores the cookie then) and
needs no CSRF token; every other state-changing request must echo the `csrftoken` cookie in the
`x-csrftoken` header (htmx, set on the page's body) or the `_csrf_token` form field.
Forge webhooks (signed payloads) are excluded by their handlers' `exclude_from_csrf` opt.

A request with neither an `Authorization` header nor a session cookie, to a route that needs a
signed-in caller, is passed on too: it cannot act as anyone, and the policy point answers it 401
("sign in first") instead of a CSRF 403 that would send an API client without a key looking for a
token it does not need. Open routes (the login form) keep the token check: it stops login CSRF.
"""

from __future__ import annotations

import secrets

from litestar.config.csrf import CSRFConfig
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Receive, Scope, Send

from controller.auth.policy import OPEN, SESSION_COOKIE, declared

COOKIE = "csrftoken"
HEADER = "x-csrftoken"


class BearerAwareCSRFMiddleware(CSRFMiddleware):
    """Litestar's CSRF check, skipped for requests authenticated by an Authorization header."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass Authorization-carrying HTTP requests straight through; check the rest."""
        if scope["type"] == ScopeType.HTTP and not _may_act_through_cookie(scope):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _may_act_through_cookie(scope: Scope) -> bool:
    """Whether the request could act as the browser's session: no Authorization header, and a
    session cookie or an open route (where the policy point lets it through without one)."""
    headers = scope["headers"]
    if any(name == b"authorization" for name, _ in headers):
        return False
    handler = scope.get("route_handler")
    permission = declared(handler) if handler is not None else None
    if permission is None or permission in OPEN:
        return True
    cookies = b"; ".join(value for name, value in headers if name == b"cookie")
    return SESSION_COOKIE.encode() + b"=" in cookies


def csrf_middleware(secret: str | None) -> DefineMiddleware:
    """The middleware, with a secret shared by every replica and kept across restarts (the data dir's
    `session.key`), so tokens in browsers stay valid; tests may let it be random."""
    config = CSRFConfig(
        secret=secret or secrets.token_hex(32),
        cookie_name=COOKIE,
        header_name=HEADER,
        cookie_samesite="lax",
        cookie_httponly=True,  # scripts never read it: the token is rendered into pages
        exclude_from_csrf_key="exclude_from_csrf",
    )
    return DefineMiddleware(BearerAwareCSRFMiddleware, config=config)
