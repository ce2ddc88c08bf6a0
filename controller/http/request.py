"""The app's request class: `json()` refuses JSON nested too deeply (400) before decoding it.

Why here: every JSON route's `data` is decoded through `Request.json()` (msgspec), whose recursion
on deep nesting is a RecursionError, not a decoding error; checking the body's depth first turns
it into a 400 that says what is wrong.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from controller.errors import Invalid
from controller.json_depth import JsonTooDeep, check_json_depth

__all__ = ["GuardedRequest"]


class GuardedRequest(Request[Any, Any, Any]):
    """Litestar's Request whose JSON is checked for depth before it is decoded."""

    async def json(self) -> Any:
        """The decoded JSON body; Invalid (400) when it nests deeper than allowed."""
        try:
            check_json_depth(await self.body())
        except JsonTooDeep as exc:
            raise Invalid(f"the request body is refused: {exc}") from None
        return await super().json()
