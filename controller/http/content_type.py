"""JSON routes take JSON bodies only: the content type a browser cannot send across sites unasked.

Why: a page on another site can POST `text/plain`, form or multipart bodies without asking the
controller first (a CORS "simple request"); `application/json` it cannot. Litestar decodes a JSON
route's body whatever its Content-Type, so a foreign page could register a repository through an
operator's browser. Refusing every other type (415) before the handler runs closes that door
without a token.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from litestar.enums import RequestEncodingType

__all__ = ["is_json_media_type", "takes_json_body", "unsupported_media_message"]

#: Methods that change state (and may carry a body); the others are never refused here.
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The REST API: every state-changing route under it is a JSON route, bodiless actions included.
API_PREFIX: Final = "/api/"


def is_json_media_type(content_type: str) -> bool:
    """`application/json`, or a `+json` type (application/merge-patch+json), any parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@cache
def takes_json_body(handler: Any) -> bool:
    """Does this route handler decode a JSON request body (a `data` parameter that is not a form)?

    Cached per handler: the answer is fixed when the app is built.
    """
    signature = getattr(handler, "parsed_fn_signature", None)
    field = signature.parameters.get("data") if signature is not None else None
    if field is None:
        return False
    media = getattr(field.kwarg_definition, "media_type", None)
    return media in (None, RequestEncodingType.JSON)


def unsupported_media_message(content_type: str) -> str:
    """Why a body was refused, and what to send instead."""
    got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    return (
        f"this route takes a JSON body, and the request has {got}: send the body as JSON with "
        "'Content-Type: application/json' (curl: --json '{...}', or -H 'Content-Type: application/json')"
    )
