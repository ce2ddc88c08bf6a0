"""controller.http.content_type: what counts as JSON, and which routes take a JSON body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from litestar import Litestar, Request, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, JSONBody

from controller.http.content_type import is_json_media_type, takes_json_body, unsupported_media_message


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/merge-patch+json",
        " application/json ",
    ],
)
def test_json_media_types(value: str) -> None:
    assert is_json_media_type(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "text/plain",
        "text/plain; a=application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/json",
        "application/jsonp",
    ],
)
def test_other_media_types(value: str) -> None:
    assert not is_json_media_type(value)


@dataclass
class Body_:
    name: str = ""


@post("/typed")
async def typed(data: JSONBody[Body_]) -> None:
    """A JSON body declared with JSONBody."""


FormBody = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@post("/form")
async def form(data: FormBody) -> None:
    """A form body."""


@post("/raw")
async def raw(request: Request[Any, Any, Any]) -> None:
    """Reads the body itself (as the webhooks and Git routes do)."""


def test_routes_that_decode_json_are_found_from_their_signature() -> None:
    Litestar([typed, form, raw])  # parses the signatures
    assert takes_json_body(typed)
    assert not takes_json_body(form) and not takes_json_body(raw)


def test_the_message_says_what_to_send() -> None:
    assert "'text/plain'" in unsupported_media_message("text/plain")
    assert "no Content-Type" in unsupported_media_message("")
    assert "Content-Type: application/json" in unsupported_media_message("x")
