"""BuildIt's marked lines in a stage log: written, found, and never forged by output."""

from __future__ import annotations

import pytest

from agent.contract import logmarks


def test_a_marked_line_parses_back_and_a_terminal_shows_its_text_alone() -> None:
    line = logmarks.line(logmarks.CMD, 2, 3, text="$ make test")
    assert line == "\x1b_buildit;cmd;2;3\x1b\\$ make test"
    mark = logmarks.parse(line)
    assert mark is not None and (mark.kind, mark.fields, mark.text) == ("cmd", ("2", "3"), "$ make test")
    assert (mark.number(0), mark.number(1), mark.number(5)) == (2, 3, 0)
    assert logmarks.plain(f"out\n{line}\nmore") == "out\n$ make test\nmore"
    end = logmarks.parse(logmarks.line(logmarks.END, "timed_out", 1, 1, text="buildit: stage timed out"))
    assert end is not None and end.fields == ("timed_out", "1", "1")


def test_ordinary_lines_and_malformed_markers_are_output() -> None:
    assert logmarks.parse("$ make test") is None
    assert logmarks.parse("echo \x1b_buildit;cmd;1;1\x1b\\x") is None  # not at the line's start
    assert logmarks.parse("\x1b_buildit;cmd;1;1 no terminator") is None
    assert logmarks.parse("\x1b_buildit;CMD;1\x1b\\x") is None  # fields are lowercase words
    assert logmarks.plain("\x1b_buildit;cmd;1;1 no terminator") == "\x1b_buildit;cmd;1;1 no terminator"


def test_output_that_starts_like_a_marker_is_neutralized_and_nothing_else_changes() -> None:
    forged = logmarks.line(logmarks.END, "succeeded", 0, 1, text="all good")
    safe = logmarks.neutralize(forged)
    assert logmarks.parse(safe) is None and safe == "\u241b" + forged[1:]
    for text in ("plain", "\x1b[31mred\x1b[0m", "\x1b_other APC\x1b\\", ""):
        assert logmarks.neutralize(text) == text


@pytest.mark.parametrize("field", ["two words", "a;b", "Upper", "x\x1b"])
def test_a_field_that_would_break_the_marker_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match="log marker field"):
        logmarks.line(logmarks.NOTE, field)


def test_a_log_read_in_pieces_cut_anywhere_prints_without_its_markers() -> None:
    log = (
        logmarks.line(logmarks.CMD, 1, 1, text="$ make")
        + "\nbuilding \x1b[32mok\x1b[0m\n"
        + "\u241b_buildit;cmd;9;9\x1b\\forged\n"
        + logmarks.line(logmarks.END, "succeeded", 0, 1, text="buildit: stage succeeded (1 command)")
        + "\n"
    ).encode()
    expected = logmarks.plain(log.decode()).encode()
    assert expected == (
        b"$ make\nbuilding \x1b[32mok\x1b[0m\n"
        b"\xe2\x90\x9b_buildit;cmd;9;9\x1b\\forged\n"  # neutralized output stays as it is
        b"buildit: stage succeeded (1 command)\n"
    )
    for size in (1, 2, 3, 7, 13, len(log)):
        stream = logmarks.PlainStream()
        out = b"".join(stream.feed(log[i : i + size]) for i in range(0, len(log), size)) + stream.flush()
        assert out == expected, size
    # A log that ends inside something that looked like a marker loses nothing.
    stream = logmarks.PlainStream()
    assert stream.feed(b"x\n\x1b_buil") == b"x\n" and stream.flush() == b"\x1b_buil"
