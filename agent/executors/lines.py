"""Splitting a stage's byte stream into lines, shared by every executor.

Splitting happens on bytes, before decoding, so a UTF-8 character cut between two chunks is
decoded whole; a run longer than MAX_LINE_BYTES without a newline is cut (never inside a UTF-8
sequence) so one runaway line cannot grow memory without bound. The pieces of a cut line go to a
separate callback when there is one (see `agent.executors.base.OutputCallback`): masking must see
across the cut, or a secret straddling it would leak in two halves.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MAX_LINE_BYTES", "LineSplitter", "PieceCallback"]

MAX_LINE_BYTES = 64 * 1024

PieceCallback = Callable[[str, bool], None]
"""Receives the pieces of one cut line in order; True for the piece that ends the line."""


class LineSplitter:
    """Turns output chunks into decoded lines (no newline, a trailing CR dropped) for `on_line`.

    A partial line is kept across chunks. A line longer than MAX_LINE_BYTES is delivered in pieces
    of at most that size: to `on_piece` when given (the last one flagged), else each to `on_line`.
    Invalid UTF-8 is replaced, never an exception.
    """

    def __init__(self, on_line: Callable[[str], None], on_piece: PieceCallback | None = None) -> None:
        self._on_line = on_line
        self._on_piece = on_piece
        self._buffer = b""
        #: Pieces of the line in the buffer were delivered already: its end is the last piece.
        self._cutting = False

    def feed(self, chunk: bytes) -> None:
        """Add a chunk; deliver the lines (and pieces) it completed."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\n" in chunk:
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            on_line = self._on_line
            cutting = self._cutting
            for line in lines:
                if cutting or len(line) > MAX_LINE_BYTES:
                    self._pieces(line, end=True)
                    cutting = False
                else:
                    on_line(line.removesuffix(b"\r").decode("utf-8", "replace"))
            self._cutting = False
        if len(buffer) > MAX_LINE_BYTES:
            buffer = self._pieces(buffer, end=False)
        self._buffer = buffer

    def flush(self) -> None:
        """Deliver the last line, if the output did not end with a newline."""
        rest, self._buffer = self._buffer, b""
        if rest or self._cutting:
            self._pieces(rest, end=True)

    def _pieces(self, data: bytes, *, end: bool) -> bytes:
        """Deliver `data` (the rest of a line) in pieces; unless `end`, return the last, undelivered."""
        pieces = _cut(data)
        tail = b"" if end else pieces.pop()
        if end and not self._cutting and len(pieces) == 1:
            self._on_line(pieces[0].removesuffix(b"\r").decode("utf-8", "replace"))
            return tail
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            final = end and index == last
            text = (piece.removesuffix(b"\r") if final else piece).decode("utf-8", "replace")
            if self._on_piece is not None:
                self._on_piece(text, final)
            else:
                self._on_line(text)
        self._cutting = not end
        return tail


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
