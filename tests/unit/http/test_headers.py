"""controller.http.headers: every response gets the security headers; UI pages the strict CSP."""

from __future__ import annotations

from typing import Any

import pytest

from controller.http.headers import API_CSP, DOCS_CSP, UI_CSP, security_headers

Headers = list[tuple[bytes, bytes]]


async def sent(path: str, content_type: bytes | None, extra: Headers | None = None) -> dict[bytes, bytes]:
    headers = [(b"content-type", content_type)] if content_type else []
    message: dict[str, Any] = {"type": "http.response.start", "headers": headers + (extra or [])}
    await security_headers(message, {"type": "http", "path": path})  # type: ignore[arg-type]
    return dict(message["headers"])


async def test_a_ui_page_gets_the_strict_policy() -> None:
    headers = await sent("/pipelines", b"text/html; charset=utf-8")
    assert headers[b"content-security-policy"] == UI_CSP.encode()
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"referrer-policy"] == b"same-origin"
    assert b"frame-ancestors 'none'" in headers[b"content-security-policy"]
    assert headers[b"cache-control"] == b"no-store"  # not kept in history after signing out


@pytest.mark.parametrize(
    ("path", "content_type", "csp"),
    [
        ("/api/v1/runs", b"application/json", API_CSP),
        ("/api/v1/x/log", b"text/plain; charset=utf-8", API_CSP),
        ("/missing", None, API_CSP),
        ("/static/app.js", b"text/javascript", API_CSP),
        ("/schema", b"text/html", DOCS_CSP),
        ("/schema/swagger", b"text/html", DOCS_CSP),
        ("/schemata", b"text/html", UI_CSP),
    ],
)
async def test_other_responses(path: str, content_type: bytes | None, csp: str) -> None:
    headers = await sent(path, content_type)
    assert headers[b"content-security-policy"] == csp.encode()
    assert headers[b"x-frame-options"] == b"DENY"
    assert (b"cache-control" in headers) == (csp == UI_CSP)


async def test_headers_a_handler_set_are_kept_and_other_messages_untouched() -> None:
    headers = await sent("/", b"text/html", [(b"Referrer-Policy", b"no-referrer")])
    assert headers[b"Referrer-Policy"] == b"no-referrer" and b"referrer-policy" not in headers
    body: dict[str, Any] = {"type": "http.response.body", "body": b"x"}
    await security_headers(body, {"type": "http", "path": "/"})  # type: ignore[arg-type]
    assert body == {"type": "http.response.body", "body": b"x"}
