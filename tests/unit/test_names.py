"""controller.names: names shown to people refuse bidi controls, zero-width and control characters."""

from __future__ import annotations

import pytest

from controller.errors import Invalid
from controller.names import check_name, name_problem, shown

REFUSED = [
    *(chr(c) for c in range(0x202A, 0x202F)),  # embeddings and overrides
    *(chr(c) for c in range(0x2066, 0x206A)),  # isolates
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u200b",  # ZERO WIDTH SPACE
    "\u200c",
    "\u200d",
    "\u2060",  # WORD JOINER
    "\ufeff",  # BOM / ZERO WIDTH NO-BREAK SPACE
    "\x00",
    "\t",
    "\n",
    "\r",
    "\x1b",
    "\x7f",
    "\x85",  # C1 NEXT LINE
    "\x9b",  # C1 CSI
]


@pytest.mark.parametrize("char", REFUSED, ids=lambda c: f"U+{ord(c):04X}")
def test_each_refused_character_is_named_by_code_point_and_position(char: str) -> None:
    problem = name_problem(f"ab{char}cd")
    assert problem is not None
    assert problem.index == 2 and problem.char == char
    message = problem.message("agent name")
    assert f"U+{ord(char):04X}" in message
    assert "at character 3" in message
    # The message never carries the character itself: it cannot reorder or hide the message.
    assert char not in message


def test_the_message_names_the_character_and_its_kind() -> None:
    problem = name_problem("build\u202etxt.exe")
    assert problem is not None
    assert problem.message("stage name").startswith(
        "stage name 'build\\u202etxt.exe' contains U+202E RIGHT-TO-LEFT OVERRIDE "
        "(a bidirectional control) at character 6; remove it"
    )
    escape = name_problem("red\x1b[31m")
    assert escape is not None and "U+001B ESCAPE (a control character)" in escape.message("agent name")
    zw = name_problem("a\u200bb")
    assert zw is not None and "U+200B ZERO WIDTH SPACE (a zero-width character)" in zw.message("x")


@pytest.mark.parametrize(
    "name", ["app", "my-app_2.0", "héllo wörld", "日本語のパイプライン", "مرحبا", "emoji ✓ 🚀", "a b"]
)
def test_ordinary_names_in_any_script_pass(name: str) -> None:
    assert name_problem(name) is None
    check_name(name, "name")


def test_the_first_refused_character_is_reported() -> None:
    problem = name_problem("a\u200bb\u202ec")
    assert problem is not None and problem.index == 1


def test_check_name_raises_invalid_with_the_message() -> None:
    with pytest.raises(Invalid) as caught:
        check_name("evil\u2066name", "repository name")
    assert "repository name 'evil\\u2066name' contains U+2066 LEFT-TO-RIGHT ISOLATE" in caught.value.message


def test_shown_escapes_only_refused_characters() -> None:
    assert shown("é\u202e\n") == "'é\\u202e\\u000a'"
