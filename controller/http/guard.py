"""The middleware that applies the origin, content-type and body-deadline rules to each request.

One middleware, not three: they look at the same headers once per request, and this keeps the
order explicit (a foreign origin is refused before its body is considered; the body deadline
wraps only what is left to read).
"""

from __future__ import annotations

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from controller.http.body_timeout import BodyDeadline
from controller.http.content_type import (
    API_PREFIX,
    UNSAFE_METHODS,
    is_json_media_type,
    takes_json_body,
    unsupported_media_message,
)
from controller.http.origin import same_origin

__all__ = ["RequestGuard"]

#: WebSocket close code for a policy violation; before the handshake, uvicorn answers it with 403.
POLICY_VIOLATION = 1008


class RequestGuard(ASGIMiddleware):
    """Refuse cross-site WebSockets and writes, non-JSON bodies on JSON routes; bound body reads."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, public_url: str, body_timeout_s: float) -> None:
        self.public_url = public_url
        self.body_timeout_s = body_timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Check one connection, then hand it on (HTTP: with a body deadline)."""
        headers = Headers.from_scope(scope)
        foreign = not same_origin(headers.get("origin"), headers.get("host"), self.public_url)
        if scope["type"] == ScopeType.WEBSOCKET:
            if foreign:
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": "cross-origin"})
                return
            await next_app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method in UNSAFE_METHODS:
            if foreign:
                raise PermissionDeniedException(
                    detail=f"cross-origin request refused: Origin {headers.get('origin')!r} is not this "
                    "controller (set BUILDIT_PUBLIC_URL to the address people open it at)"
                )
            if self._json_route(scope):
                content_type = headers.get("content-type", "")
                if (content_type or _has_body(headers)) and not is_json_media_type(content_type):
                    raise ClientException(status_code=415, detail=unsupported_media_message(content_type))
        await next_app(scope, BodyDeadline(receive, self.body_timeout_s), send)

    @staticmethod
    def _json_route(scope: Scope) -> bool:
        handler = scope.get("route_handler")
        return scope.get("path", "").startswith(API_PREFIX) or (
            handler is not None and takes_json_body(handler)
        )


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() not in ("", "0"))
