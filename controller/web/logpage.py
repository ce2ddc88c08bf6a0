"""Line-addressed pages of a stage log, so the log view never loads a whole log into the browser.

Logs are append-only files addressed by byte offset (controller.scheduling.logs). The view asks for the
tail, for the page before the first line it shows, for the page after the last, or for the page
around line N (a `#L120` link); line numbers come from counting newlines over the file, which is
fast enough for logs of millions of lines (bytes.count runs at memory speed).
A page's `end` never splits a UTF-8 character, so the live stream resumes cleanly from it.
`marks` finds BuildIt's command headers and closing line (agent.contract.logmarks) the same way,
so the page can open at the failing command of any log, however long.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract import logmarks

CHUNK = 1024 * 1024
MAX_LINES = 5000
MAX_PAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class LogPage:
    """Bytes [start, end) of a log as text; `first_line` is the 1-based number of its first line."""

    first_line: int
    start: int
    end: int
    size: int
    text: str

    def json(self) -> dict[str, object]:
        """For the log view's fetch calls."""
        return {
            "first_line": self.first_line,
            "start": self.start,
            "end": self.end,
            "size": self.size,
            "at_end": self.end >= self.size,
            "text": self.text,
        }


def utf8_boundary(data: bytes) -> int:
    """The length of the longest prefix of `data` that ends on a whole UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def _read(path: Path, start: int, end: int) -> bytes:
    if end <= start or not path.exists():
        return b""
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


# Newline counts already made, per log file: (offset, newlines before it), ascending. Stored log
# bytes never change below the recorded size, so a count stays true; the next page of the same log
# counts only from the nearest checkpoint instead of from the start of the file.
_CHECKPOINTS: OrderedDict[Path, list[tuple[int, int]]] = OrderedDict()
MAX_FILES = 256
MAX_CHECKPOINTS = 64
_LOCK = threading.Lock()  # pages are read in worker threads


def _nearest(path: Path, end: int) -> tuple[int, int]:
    best = (0, 0)
    with _LOCK:
        for offset, lines in _CHECKPOINTS.get(path, ()):
            if offset > end:
                break
            best = (offset, lines)
    return best


def _remember(path: Path, offset: int, lines: int) -> None:
    with _LOCK:
        _remember_locked(path, offset, lines)


def _remember_locked(path: Path, offset: int, lines: int) -> None:
    points = _CHECKPOINTS.setdefault(path, [])
    _CHECKPOINTS.move_to_end(path)
    if (offset, lines) not in points:
        points.append((offset, lines))
        points.sort()
        if len(points) > MAX_CHECKPOINTS:
            del points[1 : len(points) - MAX_CHECKPOINTS + 1]
    while len(_CHECKPOINTS) > MAX_FILES:
        _CHECKPOINTS.popitem(last=False)


def count_lines(path: Path, end: int) -> int:
    """Newlines in bytes [0, end): the number of lines that end before `end`."""
    if end <= 0 or not path.exists():
        return 0
    start, total = _nearest(path, end)
    with path.open("rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            block = handle.read(min(CHUNK, remaining))
            if not block:
                return total  # shorter than `end`: nothing to remember
            total += block.count(b"\n")
            remaining -= len(block)
    _remember(path, end, total)
    return total


def _page(path: Path, start: int, end: int, size: int) -> LogPage:
    data = _read(path, start, end)
    cut = utf8_boundary(data) if end >= size else len(data)
    data = data[:cut]
    return LogPage(
        count_lines(path, start) + 1, start, start + len(data), size, data.decode("utf-8", "replace")
    )


def page_before(path: Path, size: int, end: int | None, lines: int) -> LogPage:
    """The last `lines` lines before byte `end` (the tail when `end` is None)."""
    lines = min(max(lines, 1), MAX_LINES)
    end = size if end is None else min(max(end, 0), size)
    start = end
    # Skip a trailing partial line's worth of search: count newlines backwards from end.
    found = 0
    limit = max(end - MAX_PAGE_BYTES, 0)
    tail_newline = end > 0 and _read(path, end - 1, end) == b"\n"
    wanted = lines + (1 if tail_newline else 0)
    while start > limit and found < wanted:
        block_start = max(start - CHUNK, limit)
        block = _read(path, block_start, start)
        index = len(block)
        while index > 0:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found == wanted:
                start = block_start + index + 1
                return _page(path, start, end, size)
        start = block_start
    return _page(path, start, end, size)


def page_from(path: Path, size: int, start: int, lines: int) -> LogPage:
    """Up to `lines` whole lines from byte `start` (which the caller got from a page edge)."""
    lines = min(max(lines, 1), MAX_LINES)
    start = min(max(start, 0), size)
    end = start
    found = 0
    limit = min(start + MAX_PAGE_BYTES, size)
    while end < limit and found < lines:
        block = _read(path, end, min(end + CHUNK, limit))
        index = 0
        while found < lines:
            index = block.find(b"\n", index)
            if index < 0:
                break
            found += 1
            index += 1
        if found == lines:
            end += index
            break
        end += len(block)
    return _page(path, start, end, size)


def offset_of_line(path: Path, size: int, line: int) -> int:
    """The byte where 1-based line `line` starts (the end of the log when it has fewer lines)."""
    if line <= 1:
        return 0
    seen = 0
    position = 0
    with path.open("rb") as handle:
        while position < size:
            block = handle.read(min(CHUNK, size - position))
            if not block:
                break
            count = block.count(b"\n")
            if seen + count >= line - 1:
                index = -1
                for _ in range(line - 1 - seen):
                    index = block.index(b"\n", index + 1)
                return position + index + 1
            seen += count
            position += len(block)
    return size


def page_around(path: Path, size: int, line: int, lines: int, context: int = 100) -> LogPage:
    """A page that starts `context` lines before line `line`, for `#L…` links."""
    start = offset_of_line(path, size, max(line - context, 1)) if path.exists() else 0
    return page_from(path, size, start, lines)


@dataclass(frozen=True)
class LogMark:
    """A command header (`cmd`) or the closing line (`end`) of a log, and where it is."""

    line: int
    offset: int
    kind: str
    fields: tuple[str, ...]
    text: str

    def json(self) -> dict[str, object]:
        """For the log view: where each command's section starts, and how the stage ended."""
        return {
            "line": self.line,
            "offset": self.offset,
            "kind": self.kind,
            "fields": list(self.fields),
            "text": self.text,
        }


#: Marks the view needs: where commands start and the closing line (not notes, nor `more` lines).
MARK_KINDS = frozenset({logmarks.CMD, logmarks.END})
MAX_MARKS = 2000
_MARK_LINE_BYTES = 4096
_MARK_TEXT_CHARS = 300


def marks(path: Path, size: int) -> list[LogMark]:
    """The command headers and closing line of bytes [0, size) of a log, in order (at most MAX_MARKS).

    One pass over the file: marks start a line with `logmarks.PREFIX`, so it looks for
    "\n" + PREFIX and counts newlines up to each to number its line.
    """
    found: list[LogMark] = []
    if size <= 0 or not path.exists():
        return found
    needle = b"\n" + logmarks.PREFIX_BYTES
    keep = len(needle) - 1
    with path.open("rb") as handle:
        if handle.read(min(len(logmarks.PREFIX_BYTES), size)) == logmarks.PREFIX_BYTES:
            _add_mark(found, handle, 0, 1, size)
        start = 0  # file offset of the block
        lines = 0  # newlines before `start`
        while start < size and len(found) < MAX_MARKS:
            handle.seek(start)
            block = handle.read(min(CHUNK + keep, size - start))
            if not block:
                break
            index = counted = 0
            before = lines
            while len(found) < MAX_MARKS:
                at = block.find(needle, index)
                if at < 0:
                    break
                before += block.count(b"\n", counted, at + 1)
                counted = index = at + 1
                _add_mark(found, handle, start + at + 1, before + 1, size)
            # The next block starts `keep` bytes back, so a needle cut by the block's end is found
            # there (one that fits in those bytes cannot exist: it is longer than them).
            step = len(block) - keep if start + len(block) < size else len(block)
            lines += block.count(b"\n", 0, step)
            start += step
    return found


def _add_mark(found: list[LogMark], handle: Any, offset: int, line: int, size: int) -> None:
    handle.seek(offset)
    raw = handle.read(min(_MARK_LINE_BYTES, size - offset)).split(b"\n", 1)[0]
    mark = logmarks.parse(raw.decode("utf-8", "replace"))
    if mark is not None and mark.kind in MARK_KINDS:
        found.append(LogMark(line, offset, mark.kind, mark.fields, mark.text[:_MARK_TEXT_CHARS]))


def opening_line(found: list[LogMark]) -> int | None:
    """The line a finished log opens at: the header of the command the stage failed or timed out in."""
    end = next((m for m in reversed(found) if m.kind == logmarks.END), None)
    if end is None or not end.fields or end.fields[0] not in ("failed", "timed_out"):
        return None
    command = end.fields[1] if len(end.fields) > 1 else ""
    return next(
        (m.line for m in reversed(found) if m.kind == logmarks.CMD and m.fields[:1] == (command,)),
        None,
    )


@dataclass(frozen=True)
class Match:
    """A line of the log that contains the searched text."""

    line: int
    text: str


def search(path: Path, size: int, needle: str, limit: int = 200) -> tuple[list[Match], bool]:
    """Lines containing `needle` (case-insensitive, ANSI escapes ignored); True when cut at `limit`."""
    if not needle or not path.exists():
        return [], False
    # CSI sequences and BuildIt's markers (APC strings) are not text.
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b_[^\x1b]*\x1b\\")
    wanted = needle.casefold()
    matches: list[Match] = []
    number = 0
    with path.open("rb") as handle:
        remaining = size
        carry = b""
        while remaining > 0 or carry:
            block = handle.read(min(CHUNK, remaining)) if remaining > 0 else b""
            remaining -= len(block)
            data = carry + block
            parts = data.split(b"\n")
            carry = parts.pop() if remaining > 0 else b""
            for raw in parts:
                number += 1
                text = ansi.sub("", raw.decode("utf-8", "replace"))
                if wanted in text.casefold():
                    if len(matches) == limit:
                        return matches, True
                    matches.append(Match(number, text[:300]))
            if remaining <= 0:
                break
    return matches, False
