"""CSRF protection for cookie-authenticated requests (Litestar's double-submit-cookie middleware).

Browsers attach the session cookie to cross-site requests; they cannot attach an `Authorization`
header without a CORS preflight this server never grants. So a request that carries an
`Authorization` header is not cookie-authenticated (the policy point ignores the cookie then) and
needs no CSRF token; every other state-changing request must echo the `csrftoken` cookie in the
`x-csrftoken` header (htmx, set on the page's body) or the `_csrf_token` form field.
Forge webhooks (signed payloads) are excluded by their handlers' `exclude_from_csrf` opt.
"""

from __future__ import annotations

import secrets

from litestar.config.csrf import CSRFConfig
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Receive, Scope, Send

COOKIE = "csrftoken"
HEADER = "x-csrftoken"


class BearerAwareCSRFMiddleware(CSRFMiddleware):
    """Litestar's CSRF check, skipped for requests authenticated by an Authorization header."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass Authorization-carrying HTTP requests straight through; check the rest."""
        if scope["type"] == ScopeType.HTTP and any(name == b"authorization" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


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
