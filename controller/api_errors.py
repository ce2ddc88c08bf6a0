"""JSON errors for the REST API: every 4xx/5xx says what is wrong and how to fix it (a browser
navigating to a UI page gets the login page, or an HTML page for a refusal, instead).

Shape: `{"status_code": 404, "detail": "run 7 of pipeline … not found", "extra": {...}}` (Litestar's
own shape, so framework errors like malformed JSON or a too-large body look the same).
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.response import Redirect, Template

from controller.errors import HTTP_STATUS, BuildItError, Forbidden, NotFound, TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)

BODY_EXAMPLE = 'e.g. {"config": "<kdl source>"} to create a pipeline, {"branch": "main"} to trigger a run'


def _field_problem(item: Any) -> str:
    """One msgspec/Litestar validation item as "'field': what is wrong"."""
    if not isinstance(item, dict):
        return str(item)
    key = item.get("key")
    message = str(item.get("message", "invalid value")).split(" - at ")[0]
    if key in (None, "", "data"):
        return f"the request body must be a JSON object ({BODY_EXAMPLE}): {message}"
    return f"'{key}': {message}"


def validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Wrong body shape or field types: 400 naming each field and what it must be."""
    items = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    problems = [_field_problem(item) for item in items]
    detail = "; ".join(problems) if problems else (exc.detail or "invalid request")
    if "missing" in detail.lower() and "data" in str(exc.extra):
        detail = f"the request body is empty or not a JSON object ({BODY_EXAMPLE})"
    body: dict[str, Any] = {"status_code": 400, "detail": detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=400)


def client_error_handler(request: Request[Any, Any, Any], exc: ClientException) -> Response[Any]:
    """Framework 4xx errors; a body that is not valid JSON gets a message saying so; a UI path that
    matches no page (`/runs/xyz`, `/pipelines/not-a-uuid`) gets the HTML "not found" page."""
    status = exc.status_code
    if status == 404 and _ui_path(request):
        return Template(
            template_name="not_found.html",
            context={"message": "There is no page at this address.", "path": request.url.path},
            status_code=404,
        )
    detail = exc.detail or "bad request"
    if status == 400:
        detail = f"malformed JSON body: {detail}; send a JSON object ({BODY_EXAMPLE})"
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=status, headers=exc.headers)


def buildit_error_handler(request: Request[Any, Any, Any], exc: BuildItError) -> Response[Any]:
    """An operation's refusal with the status of its kind (controller.errors.HTTP_STATUS); a browser
    asking for a page without a session is sent to the login page instead, and one refused a page
    (a role it lacks, a tenant it cannot see) gets an HTML page saying so, not JSON."""
    if isinstance(exc, Unauthenticated) and _wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(path=f"/login?next={quote(target, safe='')}", status_code=303)
    if isinstance(exc, Forbidden | NotFound) and _wants_page(request):
        forbidden = isinstance(exc, Forbidden)
        return Template(
            template_name="forbidden.html" if forbidden else "not_found.html",
            context={"message": _sentence(exc.message)},
            status_code=403 if forbidden else 404,
        )
    status = HTTP_STATUS[exc.kind]
    body: dict[str, Any] = {"status_code": status, "detail": exc.message}
    if exc.extra:
        body["extra"] = exc.extra
    headers = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="buildit"'
    return Response(body, status_code=status, headers=headers)


def _sentence(message: str) -> str:
    """An API message as a sentence on a page ("this needs …" -> "This needs ….")."""
    text = message[:1].upper() + message[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


#: Paths that answer JSON, files or protocols, never the UI's HTML pages.
_NOT_UI = ("/api/", "/git/", "/hooks/", "/ws", "/ui/", "/static/", "/schema", "/health", "/ready")


def _ui_path(request: Request[Any, Any, Any]) -> bool:
    """A page address (any GET outside the API, the JSON endpoints of the pages, files, hooks)."""
    path = request.url.path
    return request.method in ("GET", "HEAD") and not path.startswith(_NOT_UI) and path != "/api"


def _wants_page(request: Request[Any, Any, Any]) -> bool:
    """A browser navigating to a UI page (not an API client, not htmx, not a socket)."""
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith(("/api/", "/git/", "/hooks/", "/ws"))
        and "text/html" in request.headers.get("accept", "")
        and request.headers.get("hx-request") != "true"
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Anything else: logged with its traceback for the operator, a plain 500 for the client."""
    if isinstance(exc, HTTPException):
        body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
        return Response(body, status_code=exc.status_code, headers=exc.headers)
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)
