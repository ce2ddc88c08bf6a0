"""Line-addressed log pages: the tail, earlier and later pages, the page around a line, search."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.web import logpage


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "stage.1.log"
    path.write_bytes(b"".join(f"line {n}\n".encode() for n in range(1, 10_001)))
    return path, path.stat().st_size


def numbers(page: logpage.LogPage) -> list[int]:
    return [int(line.split()[1]) for line in page.text.splitlines()]


def test_the_tail_is_the_last_lines_with_their_numbers(log: tuple[Path, int]) -> None:
    path, size = log
    page = logpage.page_before(path, size, None, 100)
    assert numbers(page) == list(range(9901, 10_001))
    assert page.first_line == 9901 and page.end == size and page.json()["at_end"] is True
    assert path.read_bytes()[page.start : page.end].decode() == page.text


def test_pages_before_and_after_join_without_gap_or_overlap(log: tuple[Path, int]) -> None:
    path, size = log
    tail = logpage.page_before(path, size, None, 1000)
    earlier = logpage.page_before(path, size, tail.start, 1000)
    assert earlier.end == tail.start and numbers(earlier) == list(range(8001, 9001))
    later = logpage.page_from(path, size, earlier.end, 500)
    assert later.start == tail.start and numbers(later) == list(range(9001, 9501))
    assert later.first_line == 9001 and later.json()["at_end"] is False
    first = logpage.page_before(path, size, logpage.offset_of_line(path, size, 51), 1000)
    assert first.start == 0 and numbers(first) == list(range(1, 51))


def test_the_page_around_a_line_starts_a_little_before_it(log: tuple[Path, int]) -> None:
    path, size = log
    page = logpage.page_around(path, size, 5000, 300, context=100)
    assert page.first_line == 4900 and numbers(page)[:2] == [4900, 4901] and len(numbers(page)) == 300
    past = logpage.page_around(path, size, 50_000, 300)
    assert past.text == "" and past.start == size  # past the end: an empty page at the end
    assert logpage.offset_of_line(path, size, 1) == 0
    assert logpage.offset_of_line(path, size, 3) == len(b"line 1\nline 2\n")


def test_a_partial_last_line_and_split_utf8_wait_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "live.log"
    data = "a\nb\ncafé".encode()
    path.write_bytes(data)
    page = logpage.page_before(path, len(data) - 1, None, 10)  # the stored size splits the é
    assert page.text == "a\nb\ncaf" and page.end == len(data) - 2
    whole = logpage.page_before(path, len(data), None, 2)
    assert whole.text == "b\ncafé" and whole.first_line == 2


def test_utf8_boundary() -> None:
    assert logpage.utf8_boundary(b"abc") == 3
    assert logpage.utf8_boundary("é".encode()[:1]) == 0
    assert logpage.utf8_boundary("x€".encode()[:3]) == 1
    assert logpage.utf8_boundary("x€".encode()) == 4
    assert logpage.utf8_boundary("😀".encode()) == 4


def test_search_finds_lines_ignoring_case_and_ansi(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_bytes(b"ok\n\x1b[31mERROR\x1b[0m: disk\nfine\nan error again\n")
    matches, cut = logpage.search(path, path.stat().st_size, "error")
    assert [(m.line, m.text) for m in matches] == [(2, "ERROR: disk"), (4, "an error again")]
    assert cut is False
    few, cut = logpage.search(path, path.stat().st_size, "e", limit=2)
    assert len(few) == 2 and cut is True
    assert logpage.search(path, path.stat().st_size, "") == ([], False)


def test_a_missing_file_is_an_empty_log(tmp_path: Path) -> None:
    page = logpage.page_before(tmp_path / "absent.log", 0, None, 10)
    assert page.text == "" and page.first_line == 1 and page.json()["at_end"] is True


def test_line_counts_reuse_earlier_counts_and_stay_exact(tmp_path: Path) -> None:
    path = tmp_path / "grow.log"
    path.write_bytes(b"a\n" * 1000)
    assert logpage.count_lines(path, 1000) == 500
    with path.open("ab") as handle:  # the log grows: counts past the checkpoint add on
        handle.write(b"b\n" * 1000)
    assert logpage.count_lines(path, 4000) == 2000
    assert logpage.count_lines(path, 2001) == 1000  # between checkpoints
    assert logpage.count_lines(path, 1) == 0
    assert logpage.count_lines(path, 10_000) == 2000  # past the end: what there is


CLOSING = 'buildit: command 2 of 2 failed: "make test" exited with 1'


def marked_log(path: Path) -> list[str]:
    """A log with BuildIt's lines among output (agent.contract.logmarks); returns its lines."""
    from agent.contract import logmarks

    lines = [
        logmarks.line(logmarks.NOTE, text="fetched abc123"),
        logmarks.line(logmarks.CMD, 1, 2, text="$ make deps"),
        *(f"dep {n}" for n in range(1, 40)),
        # Output that looks like a marker, but not at a line's start, is output.
        f"echo {logmarks.line(logmarks.CMD, 9, 9, text='$ fake')}",
        logmarks.line(logmarks.CMD, 2, 2, text="$ make test"),
        logmarks.line(logmarks.MORE, 2, 2, text="> second line"),
        *(f"test {n}" for n in range(1, 40)),
        logmarks.line(logmarks.END, "failed", 2, 2, text=CLOSING),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return lines


@pytest.mark.parametrize("chunk", [7, 64, 1024 * 1024])
def test_marks_are_found_with_their_line_numbers_across_block_edges(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logpage, "CHUNK", chunk)
    path = tmp_path / "marked.log"
    lines = marked_log(path)
    found = logpage.marks(path, path.stat().st_size)
    assert [(m.line, m.kind, m.fields, m.text) for m in found] == [
        (2, "cmd", ("1", "2"), "$ make deps"),
        (43, "cmd", ("2", "2"), "$ make test"),
        (84, "end", ("failed", "2", "2"), CLOSING),
    ]
    data = path.read_bytes()
    for mark in found:  # offsets are where the lines start
        assert data[mark.offset :].split(b"\n", 1)[0].decode() == lines[mark.line - 1]
    # The page opens at the failed command's header.
    assert logpage.opening_line(found) == 43


def test_a_log_that_starts_with_a_command_and_succeeded_opens_at_its_tail(tmp_path: Path) -> None:
    from agent.contract import logmarks

    path = tmp_path / "ok.log"
    path.write_bytes(
        (
            logmarks.line(logmarks.CMD, 1, 1, text="$ true")
            + "\n"
            + logmarks.line(logmarks.END, "succeeded", 0, 1, text="buildit: stage succeeded (1 command)")
            + "\n"
        ).encode()
    )
    found = logpage.marks(path, path.stat().st_size)
    assert [(m.line, m.offset, m.kind) for m in found] == [(1, 0, "cmd"), (2, found[1].offset, "end")]
    assert logpage.opening_line(found) is None
    # Only what was stored counts: bytes past `size` are not read.
    assert [m.kind for m in logpage.marks(path, found[1].offset)] == ["cmd"]


def test_search_ignores_the_markers(tmp_path: Path) -> None:
    path = tmp_path / "marked.log"
    marked_log(path)
    matches, _ = logpage.search(path, path.stat().st_size, "buildit;")
    assert [m.line for m in matches] == []
    matches, _ = logpage.search(path, path.stat().st_size, "make test")
    assert next((m.line, m.text) for m in matches) == (43, "$ make test")
