"""Security headers on every response, and the strict Content-Security-Policy of the UI pages.

Why on every response (a `before_send` hook, which also sees 404s and errors raised before any
handler): no BuildIt response may be framed by another site (clickjacking the operator's buttons),
sniffed into another type (a log line read as HTML), or leak its URL to other sites in a Referer.
UI pages get a CSP that allows only the controller's own scripts, styles and connections, so text
that slips into a page (a commit message, a log) can never run; the pages keep every script and
style in /static for that reason. Other responses get a CSP that allows nothing at all.
UI pages are also `Cache-Control: no-store`: they show one signed-in user's tenant, so neither a
shared cache nor the browser's history (the back button after signing out) may keep them.
"""

from __future__ import annotations

from typing import Final

from litestar.types import Message, Scope

__all__ = ["API_CSP", "DOCS_CSP", "UI_CSP", "security_headers"]

#: The web UI's pages: only same-origin scripts, styles, images (and data: icons), XHR/WebSocket.
UI_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: JSON, text, files: nothing in them may run or load anything, even if a browser renders them.
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: The OpenAPI viewers under /schema are Litestar's (scripts from a CDN, inline code): never framed.
DOCS_CSP: Final = "frame-ancestors 'none'"
DOCS_PREFIX: Final = "/schema"

_COMMON: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_CSP: Final = b"content-security-policy"
_CACHE: Final = b"cache-control"


def _csp_for(path: str, content_type: bytes) -> str:
    if not content_type.lower().startswith(b"text/html"):
        return API_CSP
    if path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/"):
        return DOCS_CSP
    return UI_CSP


async def security_headers(message: Message, scope: Scope) -> None:
    """Add the security headers to a response's start message (headers a handler set are kept)."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or ())
    present = {name.lower() for name, _ in headers}
    content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
    for name, value in _COMMON:
        if name not in present:
            headers.append((name, value))
    csp = _csp_for(scope.get("path", ""), content_type)
    if _CSP not in present:
        headers.append((_CSP, csp.encode()))
    if csp == UI_CSP and _CACHE not in present:
        headers.append((_CACHE, b"no-store"))
    message["headers"] = headers
