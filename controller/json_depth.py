"""How deeply JSON nests, found without decoding it, so deep nesting is refused before a decoder.

Why: JSON decoders recurse once per level; 10,000 nested arrays raise RecursionError inside the
decoder, which surfaced as a 500 (REST) or a dropped socket (/ws). No request BuildIt accepts
nests more than a few levels, so anything deeper than MAX_JSON_DEPTH is refused with a message.
The common case costs two `bytes.count` calls: a body with fewer brackets than the limit cannot
nest deeper than it.
"""

from __future__ import annotations

import operator
import re
from itertools import accumulate, repeat
from typing import Final

__all__ = ["MAX_JSON_DEPTH", "JsonTooDeep", "check_json_depth", "json_depth"]

#: Deepest nesting of arrays and objects any request may have.
MAX_JSON_DEPTH: Final = 64

#: A JSON string (brackets inside strings do not nest).
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: bytes.translate table: an opening bracket becomes 2, a closing one 0 (minus one: +1 / -1).
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


class JsonTooDeep(ValueError):
    """The JSON nests deeper than allowed; the message says how deep and the limit."""


def json_depth(text: bytes | str) -> int:
    """The deepest nesting of arrays and objects in `text` (0 for a scalar).

    Malformed JSON gets a best-effort figure; the decoder reports what is wrong with it.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if b'"' in data:
        data = _STRING.sub(b"", data)
    steps = data.translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(map(operator.sub, steps, repeat(1))), default=0)


def check_json_depth(text: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise JsonTooDeep when `text` nests arrays and objects deeper than `limit`."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    depth = json_depth(data)
    if depth > limit:
        raise JsonTooDeep(f"the JSON nests {depth} levels deep; at most {limit} levels are accepted")
