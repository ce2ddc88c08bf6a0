"""Masker: every secret value becomes *** wherever it appears in a line (encoded forms: test_masking)."""

from __future__ import annotations

from agent.logs import MASK, Masker


def test_mask_constant() -> None:
    assert MASK == "***"


def test_masks_occurrences_anywhere_in_a_line() -> None:
    mask = Masker(["s3cr3t"])
    assert mask("s3cr3t") == "***"
    assert mask("token=s3cr3t;") == "token=***;"
    assert mask("s3cr3ts3cr3t and again s3cr3t.") == "****** and again ***."
    assert mask("S3CR3T is a different string") == "S3CR3T is a different string"


def test_masks_every_secret() -> None:
    mask = Masker(["alpha", "beta", "gamma"])
    assert mask("gamma beta alpha delta") == "*** *** *** delta"


def test_regex_metacharacters_are_literal() -> None:
    mask = Masker(["a.b*c", "(x|y)"])
    assert mask("a.b*c axbbc (x|y) x") == "*** axbbc *** x"


def test_longest_first_masks_containing_secret_whole() -> None:
    mask = Masker(["sec", "secret"])
    assert mask("my secret and sec") == "my *** and ***"
    assert Masker(["secret", "sec"])("secretive") == "***ive"


def test_no_secrets_is_a_noop() -> None:
    mask = Masker([])
    line = "nothing *** to hide $(x) \\1"
    assert mask(line) == line
    assert Masker(["", ""])(line) == line


def test_empty_secret_values_are_ignored_alongside_real_ones() -> None:
    assert Masker(["", "tok"])("a tok b") == "a *** b"


def test_multiline_secret_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBB\nCCCCDDDD\n-----END KEY-----\n"
    mask = Masker([key])
    assert mask("-----BEGIN KEY-----") == "***"
    assert mask("  AAAABBBB") == "  ***"
    assert mask("xCCCCDDDDx") == "x***x"
    # The whole value is masked too, in a block of lines (the shipper masks whole chunks): one ***
    # per line, so masking never changes how many lines a log has.
    assert mask("k=" + key) == "k=***\n***\n***\n***\n"


def test_multiline_secret_blank_lines_are_not_masked() -> None:
    mask = Masker(["one\n\n   \ntwo"])
    assert mask("") == ""
    assert mask("   ") == "   "
    assert mask("one two") == "*** ***"


def test_crlf_multiline_secret() -> None:
    mask = Masker(["first\r\nsecond"])
    assert mask("first") == "***"
    assert mask("second") == "***"


def test_overlapping_secrets_sharing_a_prefix() -> None:
    mask = Masker(["abc", "abcdef"])
    assert mask("xabcdefx") == "x***x"
    assert mask("xabcx") == "x***x"


def test_overlapping_secrets_leave_no_part_of_either() -> None:
    # BUG: agent/logs.py Masker builds one alternation regex (longest first) and re.sub takes the
    # leftmost match; when a shorter secret starts before a longer one overlapping it, the longer
    # secret's occurrence is not masked: Masker(["xab", "abcdef"])("xabcdef") returns "***cdef",
    # leaking 4 of the 6 characters of "abcdef". Expected: the union of all occurrences masked.
    masked = Masker(["xab", "abcdef"])("pre xabcdef post")
    assert masked.startswith("pre ") and masked.endswith(" post")
    assert set(masked[len("pre ") : -len(" post")]) == {"*"}, masked


def test_overlapping_secrets_both_directions_hide_each_secret() -> None:
    # Same pattern length, overlapping in the middle: neither value may appear afterwards.
    masked = Masker(["abc", "bcd"])("zabcdz")
    assert "abc" not in masked and "bcd" not in masked


def test_wrap_masks_before_passing_on() -> None:
    seen: list[str] = []
    sink = Masker(["pwd"]).wrap(seen.append)
    sink("login pwd")
    sink("clean")
    assert seen == ["login ***", "clean"]


def test_wrap_without_secrets_returns_the_sink_itself() -> None:
    seen: list[str] = []
    assert Masker([]).wrap(seen.append) == seen.append


def test_accepts_any_iterable_once() -> None:
    mask = Masker(v for v in ["gen1", "gen2"])
    assert mask("gen1 gen2") == "*** ***"
