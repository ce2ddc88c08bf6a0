"""Following one stage attempt's log for a WebSocket client: `LogReader`'s pieces as JSON messages.

`controller.runs.logread.LogReader` merges the stored file and live events; this adapter waits for
room in the connection's outbox before pulling the next piece (the file is the buffer), merges
pieces into messages of at most MESSAGE_BYTES that never split a UTF-8 character (bytes after the
last whole character wait for the next message), and tells a client that fell more than
LAG_BYTES behind the live edge to `reload`. `log_end` follows once the attempt has finished and
every byte was sent; an attempt superseded by a retry ends with status `retried`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from controller.deps import Deps
from controller.errors import BuildItError
from controller.runs.logread import Lagging, LogEnd, LogReader, LogState

MESSAGE_BYTES = 512 * 1024
#: How far behind the live edge a follower that had caught up may fall before it is told `reload`.
LAG_BYTES = 8 * 1024 * 1024


class FollowError(Exception):
    """The request names no log that can be followed; the message says why and what to send."""


def complete_utf8(data: bytes | bytearray) -> int:
    """Length of the longest prefix of `data` that does not end inside a UTF-8 character."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        byte = data[n - back]
        if byte < 0x80:
            return n
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4 if byte < 0xF8 else 1
            return n if need <= back else n - back
    return n  # only continuation bytes: invalid anyway, send them (decoded as U+FFFD)


class LogFollower:
    """One `{"op":"log"}` request: sends `log` messages, then `log_end`, through `send`."""

    def __init__(
        self,
        deps: Deps,
        tag: str,
        run_id: UUID,
        stage: str,
        attempt: int,
        offset: int,
        send: Callable[[dict[str, Any]], None],
        wait_room: Callable[[], Any],
    ) -> None:
        self.tag = tag
        self.send = send
        self.wait_room = wait_room
        self.reader = LogReader(
            deps.scheduler, deps.logs, deps.events, run_id, stage, attempt, offset, lag_limit=LAG_BYTES
        )
        self.sent = offset  # the `next` of the last message
        self.pending = bytearray()

    async def state(self) -> LogState:
        """The attempt's recorded size and status (FollowError for an unknown stage or attempt)."""
        try:
            return await self.reader.state()
        except BuildItError as exc:
            raise FollowError(exc.message) from None

    async def run(self) -> None:
        """Send the log until the attempt finished and every byte went out (or until cancelled)."""
        try:
            async for item in self.reader.items():
                if isinstance(item, Lagging):
                    self.send({"type": "reload", "topic": "log", "id": self.tag, "next": self.sent})
                    return
                if isinstance(item, LogEnd):
                    self._emit(b"", final=True)
                    self.send({"type": "log_end", "id": self.tag, "next": self.sent, "status": item.status})
                    return
                self._emit(item.data)
                await self.wait_room()
        except BuildItError as exc:
            raise FollowError(exc.message) from None

    def _emit(self, data: bytes, final: bool = False) -> None:
        """Send `data` (after any held-back bytes) as messages of whole characters."""
        self.pending += data
        while self.pending:
            piece = self.pending[:MESSAGE_BYTES]
            cut = len(piece) if final else complete_utf8(piece)
            if cut == 0:
                return  # an incomplete character: wait for its remaining bytes
            text = piece[:cut].decode("utf-8", "replace")
            del self.pending[:cut]
            start, self.sent = self.sent, self.sent + cut
            self.send({"type": "log", "id": self.tag, "offset": start, "next": self.sent, "data": text})


def dumps(message: dict[str, Any]) -> str:
    """A message as a compact JSON text frame (non-ASCII kept as is: the frame is UTF-8 anyway)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
