"""agent.executors.lines: bytes to lines, and the pieces of a line longer than the cut."""

from __future__ import annotations

from agent.executors.lines import MAX_LINE_BYTES, LineSplitter


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def line(self, text: str) -> None:
        self.events.append(("line", text))

    def piece(self, text: str, last: bool) -> None:
        self.events.append(("last" if last else "piece", text))


def test_lines_across_chunks_with_crlf_and_a_character_cut_between_chunks() -> None:
    seen = Seen()
    splitter = LineSplitter(seen.line, seen.piece)
    data = "one\r\ntwo é\nthree".encode()
    for i in range(len(data)):
        splitter.feed(data[i : i + 1])
    splitter.flush()
    assert seen.events == [("line", "one"), ("line", "two é"), ("line", "three")]


def test_a_long_line_arrives_as_pieces_the_last_one_flagged() -> None:
    seen = Seen()
    splitter = LineSplitter(seen.line, seen.piece)
    splitter.feed(b"x" * (MAX_LINE_BYTES + 10))
    splitter.feed(b"y" * MAX_LINE_BYTES)
    splitter.feed(b"z\r\nnext\n")
    kinds = [kind for kind, _ in seen.events]
    assert kinds == ["piece", "piece", "last", "line"]
    assert "".join(text for kind, text in seen.events if kind != "line") == (
        "x" * (MAX_LINE_BYTES + 10) + "y" * MAX_LINE_BYTES + "z"
    )
    assert all(len(text) <= MAX_LINE_BYTES for _, text in seen.events)
    assert seen.events[-1] == ("line", "next")


def test_a_long_line_inside_one_chunk_and_one_cut_at_the_end_of_the_output() -> None:
    seen = Seen()
    splitter = LineSplitter(seen.line, seen.piece)
    splitter.feed(b"a\n" + b"b" * (MAX_LINE_BYTES + 1) + b"\nc\n" + b"d" * (MAX_LINE_BYTES + 5))
    splitter.flush()
    assert [(k, len(t)) for k, t in seen.events] == [
        ("line", 1),
        ("piece", MAX_LINE_BYTES),
        ("last", 1),
        ("line", 1),
        ("piece", MAX_LINE_BYTES),
        ("last", 5),
    ]


def test_pieces_never_split_a_utf8_character() -> None:
    seen = Seen()
    splitter = LineSplitter(seen.line, seen.piece)
    text = "é" * MAX_LINE_BYTES
    splitter.feed(text.encode() + b"\n")
    assert "".join(t for _, t in seen.events) == text
    assert "\ufffd" not in "".join(t for _, t in seen.events)


def test_without_a_piece_callback_every_piece_is_a_line() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append)
    splitter.feed(b"x" * (2 * MAX_LINE_BYTES + 1) + b"\n")
    assert [len(line) for line in lines] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 1]


def test_invalid_utf8_is_replaced() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append)
    splitter.feed(b"ok \xff\xfe end\n")
    assert lines == ["ok \ufffd\ufffd end"]
