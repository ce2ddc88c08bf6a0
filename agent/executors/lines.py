"""Splitting a stage's byte stream into lines, shared by every executor.

Splitting happens on bytes, before decoding, so a UTF-8 character cut between two chunks is
decoded whole; a run longer than MAX_LINE_BYTES without a newline is cut (never inside a UTF-8
sequence) so one runaway line cannot grow memory without bound.
"""

from __future__ import annotations

MAX_LINE_BYTES = 64 * 1024


class LineSplitter:
    """Turns output chunks into raw lines (no newline), keeping a partial line across chunks."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add a chunk; return the lines it completed."""
        self._buffer += chunk
        lines: list[bytes] = []
        if b"\n" in chunk:
            *complete, self._buffer = self._buffer.split(b"\n")
            for line in complete:
                lines.extend(_cut(line) if len(line) > MAX_LINE_BYTES else (line,))
        if len(self._buffer) > MAX_LINE_BYTES:
            *full, self._buffer = _cut(self._buffer)
            lines.extend(full)
        return lines

    def flush(self) -> list[bytes]:
        """The last line, if the output did not end with a newline."""
        rest, self._buffer = self._buffer, b""
        return [rest] if rest else []


def _cut(line: bytes) -> list[bytes]:
    """Pieces of at most MAX_LINE_BYTES, never splitting a UTF-8 sequence; the last may be short."""
    pieces: list[bytes] = []
    while len(line) > MAX_LINE_BYTES:
        cut = MAX_LINE_BYTES
        while cut > MAX_LINE_BYTES - 4 and line[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def decode(raw: bytes) -> str:
    """One line as text: a trailing CR dropped, invalid UTF-8 replaced (never an exception)."""
    return raw.removesuffix(b"\r").decode("utf-8", errors="replace")
