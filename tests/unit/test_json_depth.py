"""controller.json_depth: nesting measured without decoding; deep JSON refused before a decoder."""

from __future__ import annotations

import json

import pytest

from controller.json_depth import MAX_JSON_DEPTH, JsonTooDeep, check_json_depth, json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("5", 0),
        ('"[[[["', 0),  # brackets in strings do not nest
        ("[]", 1),
        ('{"a": [1, {"b": [2]}]}', 4),
        ('{"a\\"[": [1]}', 2),  # an escaped quote does not end the string
        ('["\\\\", [[]]]', 3),  # an escaped backslash does
        ("[" * 10_000 + "]" * 10_000, 10_000),
    ],
)
def test_depth(text: str, depth: int) -> None:
    assert json_depth(text) == depth
    assert json_depth(text.encode()) == depth


def test_what_a_decoder_would_recurse_on_is_refused_before_it() -> None:
    deep = "[" * 10_000 + "]" * 10_000
    with pytest.raises(RecursionError):
        json.loads(deep)  # what happened before: a RecursionError, a 500
    with pytest.raises(JsonTooDeep, match=f"nests 10000 levels deep; at most {MAX_JSON_DEPTH} levels"):
        check_json_depth(deep)


def test_the_limit_itself_passes_and_many_shallow_brackets_are_fine() -> None:
    check_json_depth("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    with pytest.raises(JsonTooDeep):
        check_json_depth("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    check_json_depth(json.dumps([[i] for i in range(10_000)]))
    # A pipeline file is a string: its braces do not count.
    check_json_depth(json.dumps({"config": "stage {" * 5_000}))
