"""Following one stage attempt's log for a WebSocket client: stored bytes, then live ones.

The stored file and the event bus are merged by byte offset: the follower subscribes first, then
reads the file up to the stage's recorded size, then takes each published chunk from where it has
got to (a log event carries its start offset), so nothing is missed between the read and the
subscription and nothing is sent twice. When the subscription overflows (a burst outran the
follower) or an event starts past what the follower has, it reads the gap from the file: the file
is the buffer, so a slow client only falls behind the live edge, never loses bytes, and costs
bounded memory (the follower waits for room in the connection's outbox before reading more).
A client that was at the live edge and then falls more than LAG_BYTES behind it (a browser that
cannot keep up with a stage printing fast) is told `reload` and the stream ends: the page shows
the tail again instead of working through megabytes it would drop anyway. A request for history
(an old offset) streams everything asked for.

Chunks are merged (up to MESSAGE_BYTES per message) and never split a UTF-8 character: bytes
after the last whole character wait for the next message. `log_end` follows once the attempt has
finished and every byte was sent. An attempt superseded by a retry ends with status `retried`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from agent.contract.types import StageStatus
from controller.events import Event, Overflow
from controller.live.render import settled
from controller.runs.tables import StageRun
from controller.services import Services

MESSAGE_BYTES = 512 * 1024
#: How far behind the live edge a follower that had caught up may fall before it is told `reload`.
LAG_BYTES = 8 * 1024 * 1024
#: Queued log events hold their data; past this the follower reads the file instead.
QUEUE_EVENTS = 32
_KINDS = frozenset({"log", "stage"})


class FollowError(Exception):
    """The request names no log that can be followed; the message says why and what to send."""


@dataclass(frozen=True)
class LogState:
    """Where an attempt's log stands: bytes stored, and whether more can come."""

    size: int
    finished: bool
    status: str


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
        svc: Services,
        tag: str,
        run_id: UUID,
        stage: str,
        attempt: int,
        offset: int,
        send: Callable[[dict[str, Any]], None],
        wait_room: Callable[[], Any],
    ) -> None:
        self.svc = svc
        self.tag = tag
        self.run_id = run_id
        self.stage = stage
        self.attempt = attempt
        self.send = send
        self.wait_room = wait_room
        self.path: Path = svc.logs.find(run_id, stage, attempt)
        self.pos = offset  # bytes taken from the log so far (sent or held in `pending`)
        self.sent = offset  # the `next` of the last message
        self.pending = bytearray()
        self.caught_up = False  # reached the live edge of an unfinished attempt once

    async def state(self) -> LogState:
        """The attempt's recorded size and status: the scheduler's working copy, else the database."""
        run = self.svc.scheduler.runs.get(self.run_id)
        live = run.stages.get(self.stage) if run is not None else None
        if live is not None:
            attempt, size, status = live.attempt, live.log_size, live.status
        else:
            await settled(self.svc)  # a run that just finished: read what its operation committed
            row = (
                await StageRun.select(StageRun.attempt, StageRun.log_size, StageRun.status)
                .where((StageRun.run == self.run_id) & (StageRun.name == self.stage))
                .first()
            )
            if row is None:
                raise FollowError(f"run {self.run_id} has no stage {self.stage!r} (any more)")
            attempt, size, status = row["attempt"], row["log_size"], StageStatus(row["status"])
        if self.attempt > attempt:
            raise FollowError(
                f"stage {self.stage!r} of run {self.run_id} has no attempt {self.attempt} yet "
                f"(latest: {attempt}); ask for attempt 1..{attempt}"
            )
        if self.attempt < attempt:  # superseded by a retry: its file is complete
            stored = await asyncio.to_thread(_file_size, self.path)
            return LogState(stored, True, "retried")
        return LogState(size, status.finished, status.value)

    async def run(self) -> None:
        """Send the log until the attempt finished and every byte went out (or until cancelled)."""
        bus = self.svc.events
        async with bus.subscribe(self.run_id, _KINDS, limit=QUEUE_EVENTS) as queue:
            first = True
            while True:
                state = await self.state()
                if first and self.pos > state.size and state.finished:
                    raise FollowError(
                        f"offset {self.pos} is past the end of the log of stage {self.stage!r} "
                        f"attempt {self.attempt} ({state.size} bytes); resume from at most {state.size}"
                    )
                first = False
                if self.caught_up and not state.finished and state.size - self.pos > LAG_BYTES:
                    self.send({"type": "reload", "topic": "log", "id": self.tag, "next": self.sent})
                    return
                await self._catch_up(state.size)
                self.caught_up = self.caught_up or not state.finished
                if state.finished:
                    self._emit(b"", final=True)
                    self.send({"type": "log_end", "id": self.tag, "next": self.sent, "status": state.status})
                    return
                await self._live(queue)

    async def _catch_up(self, size: int) -> None:
        """Read [pos, size) from the stored file, a message at a time, as the outbox has room."""
        while self.pos < size:
            await self.wait_room()
            data = await asyncio.to_thread(self.svc.logs.read, self.path, self.pos, size, MESSAGE_BYTES)
            if not data:  # the file is shorter than recorded (removed?): nothing more to read
                return
            self.pos += len(data)
            self._emit(data)

    async def _live(self, queue: asyncio.Queue[Event | Overflow]) -> None:
        """Wait for events; merge every chunk that is already queued into one message."""
        event = await queue.get()
        buf = bytearray()
        while True:
            if isinstance(event, Overflow) or event.kind == "stage":
                break  # re-read the state (and the file) at the top
            if event.subject.name == self.stage and event.attempt == self.attempt:
                end = event.offset + len(event.data)
                if event.offset > self.pos + len(buf):
                    break  # a gap (events were dropped): the file has it
                if end > self.pos + len(buf):
                    buf += memoryview(event.data)[self.pos + len(buf) - event.offset :]
                    if len(buf) >= MESSAGE_BYTES:
                        break
            try:
                event = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        if buf:
            self.pos += len(buf)
            self._emit(bytes(buf))
            await self.wait_room()

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


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def dumps(message: dict[str, Any]) -> str:
    """A message as a compact JSON text frame (non-ASCII kept as is: the frame is UTF-8 anyway)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
