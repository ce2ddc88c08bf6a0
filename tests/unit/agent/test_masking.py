"""agent.masking: the encoded forms of a secret, escape sequences inside it, and long lines' pieces."""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import urllib.parse

import pytest

import agent.masking
from agent.masking import MASK, Masker, PieceMasker, secret_forms

SECRET = "pa55/word+Zq3v9X0Jr?&é"
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\^_]")


def visible(text: str) -> str:
    return _ANSI.sub("", text)


# --- short values ---------------------------------------------------------------------------------


def test_values_shorter_than_three_characters_are_not_masked_and_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.masking, "_warned_short", False)
    with caplog.at_level(logging.WARNING, logger="agent.masking"):
        mask = Masker(["x", "ab", "abc"])
        Masker(["yz"])
    assert mask.too_short == 2
    assert mask("x ab abc") == f"x ab {MASK}"
    assert len([r for r in caplog.records if "shorter than 3" in r.getMessage()]) == 1  # once
    assert "ab" not in caplog.text.replace("characters", "")  # never the value itself
    assert secret_forms("ab") == set()


def test_blank_lines_of_a_multiline_value_are_no_forms() -> None:
    assert not any(form.strip() == "" for form in secret_forms("one\n   \n\ttwo\n"))


# --- encoded forms --------------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_the_value_alone_padded_or_not(encode: object) -> None:
    assert callable(encode)
    encoded = encode(SECRET.encode()).decode()
    mask = Masker([SECRET])
    assert visible(mask(f"b64={encoded}")).startswith(f"b64={MASK}")
    assert mask(encoded.rstrip("=")) == MASK
    assert encoded.rstrip("=") not in mask(encoded)


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc", b"abcd"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_the_value_inside_longer_data_in_every_alignment(prefix: bytes, encode: object) -> None:
    assert callable(encode)
    raw = SECRET.encode()
    encoded = encode(prefix + raw + b'", "next": 1}').decode()
    masked = Masker([SECRET])(encoded)
    assert MASK in masked
    # What is left decodes to nothing that holds more than two bytes of the value in a row.
    for piece in masked.split(MASK):
        for start in range(len(raw) - 2):
            assert raw[start : start + 3].hex() not in _decodable_hex(piece, encode)


def _decodable_hex(fragment: str, encode: object) -> str:
    """Hex of the bytes each 4-aligned run of `fragment` decodes to, in the three possible phases."""
    decode = base64.urlsafe_b64decode if encode is base64.urlsafe_b64encode else base64.b64decode
    out = []
    for phase in range(4):
        run = fragment[phase:].rstrip("=")
        run = run[: len(run) - len(run) % 4]
        try:
            out.append(decode(run).hex())
        except ValueError:
            continue
    return " ".join(out)


def test_wrapped_base64_of_a_long_value_is_masked_on_every_line() -> None:
    value = "k" * 50 + SECRET * 5
    wrapped = base64.encodebytes(value.encode()).decode().splitlines()
    assert len(wrapped) > 2
    mask = Masker([value])
    assert all(mask(line) == MASK for line in wrapped[:-1])
    assert mask(wrapped[-1]).startswith(MASK) or len(wrapped[-1]) < 6


def test_percent_and_json_encodings() -> None:
    mask = Masker([SECRET])
    for encoded in (
        urllib.parse.quote(SECRET),
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(SECRET, safe="")),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
    ):
        assert mask(f"GET /x?t={encoded}&y=1") == f"GET /x?t={MASK}&y=1", encoded
    assert mask(json.dumps({"token": SECRET})) == '{"token": "***"}'
    assert mask(json.dumps({"k": "a\nb" + SECRET})) == '{"k": "a\\nb***"}'


# --- escape sequences -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "escape",
    ["\x1b[0m", "\x1b[1;31m", "\x1b[38;5;196m", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\", "\x1bM"],
)
def test_an_escape_sequence_between_the_characters_does_not_reveal_the_value(escape: str) -> None:
    for at in (1, 5, len(SECRET) - 1):
        line = f"before {SECRET[:at]}{escape}{SECRET[at:]} after"
        masked = Masker([SECRET])(line)
        assert visible(masked) == f"before {MASK} after", (escape, at)
        assert masked.endswith(f"{MASK}{escape} after")  # the terminal's state is kept


def test_several_escapes_and_several_occurrences_on_one_line() -> None:
    line = f"\x1b[32m{SECRET[:3]}\x1b[0m\x1b[1m{SECRET[3:]}\x1b[0m and {SECRET} and \x1b[31mred\x1b[0m"
    masked = Masker([SECRET])(line)
    assert visible(masked) == f"{MASK} and {MASK} and red"
    assert "\x1b[31mred\x1b[0m" in masked


def test_coloured_output_without_secrets_is_untouched() -> None:
    line = "\x1b[32mPASSED\x1b[0m tests/test_x.py::test_y \x1b]8;;file:///x\x07link\x1b]8;;\x07"
    assert Masker([SECRET])(line) == line


# --- pieces of a long line ------------------------------------------------------------------------


def test_a_value_straddling_piece_boundaries_is_masked_wherever_the_cuts_fall() -> None:
    masker = Masker([SECRET, "another-value"])
    rng = random.Random(7)
    filler = "".join(rng.choice("xyz ") for _ in range(3000))
    split = f"{SECRET[:4]}\x1b[0m{SECRET[4:]}"
    text = f"{filler[:700]}{SECRET}{filler[700:1500]}{split}{filler[1500:]}another-value"
    expected = masker(text)
    for _ in range(200):
        out: list[str] = []
        pieces = PieceMasker(masker, out.append)
        position = 0
        while position < len(text):
            size = rng.randint(1, 400)
            piece = text[position : position + size]
            position += size
            pieces.piece(piece, position >= len(text))
        assert "".join(out) == expected
        assert all(SECRET not in visible(chunk) for chunk in out)


def test_wrap_masks_lines_and_the_pieces_of_long_lines() -> None:
    out: list[str] = []
    sink = Masker([SECRET]).wrap(out.append)
    sink(f"line {SECRET}")
    piece = getattr(sink, "piece")  # noqa: B009 - the optional method executors look for
    piece("x" * 100 + SECRET[:5], False)
    piece(SECRET[5:] + " end", True)
    assert out[0] == f"line {MASK}"
    assert "".join(out[1:]) == "x" * 100 + f"{MASK} end"


def test_safe_cut_keeps_back_what_a_value_may_start_in() -> None:
    masker = Masker([SECRET])
    assert masker.safe_cut("a" * 10) == 0
    assert masker.safe_cut("a" * 1000) == 1000 - masker.hold
    text = "a" * (1000 - masker.hold - 3) + SECRET + "b" * (masker.hold - len(SECRET) + 3)
    assert masker.safe_cut(text) == 1000 - masker.hold - 3  # not inside the value
    assert Masker([]).safe_cut("abc") == 3
