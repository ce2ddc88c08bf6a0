"""JSON errors for the REST API: every 4xx/5xx says what is wrong and how to fix it.

Shape: `{"status_code": 404, "detail": "run 7 of pipeline … not found", "extra": {...}}` (Litestar's
own shape, so framework errors like malformed JSON or a too-large body look the same).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException


def error(status: int, detail: str, **extra: Any) -> HTTPException:
    """An HTTP error with a clear message (raise it)."""
    return HTTPException(status_code=status, detail=detail, extra=extra or None)


def validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Malformed JSON and wrong field types: 400 with where and what."""
    detail = exc.detail or "invalid request"
    if "JSON" in detail or "decode" in detail.lower():
        detail = f"malformed JSON body: {detail}. Send a JSON object with Content-Type: application/json"
    body: dict[str, Any] = {"status_code": 400, "detail": detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=400)
