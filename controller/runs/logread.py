"""Reading one stage attempt's log: the stored bytes, then live ones — for every door that follows.

The stored file and the event bus are merged by byte offset: the reader subscribes first, then
reads the file up to the stage's recorded size, then takes each published chunk from where it has
got to (a log event carries its start offset), so nothing is missed between the read and the
subscription and nothing is sent twice. When the subscription overflows (a burst outran the
reader) or an event starts past what the reader has, it reads the gap from the file: the file is
the buffer, so a slow consumer only falls behind the live edge and never loses bytes. The reader is
an async iterator: a consumer that does not pull is not sent anything (back-pressure for free).

A consumer that was at the live edge and then falls more than `lag_limit` bytes behind it may be
told `Lagging` (the web page shows the tail again instead of working through megabytes it would
drop). The /ws socket (`controller.live.logfollow`) and gRPC `StreamLogs` are adapters over it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from agent.contract.types import StageStatus
from controller.errors import Invalid, NotFound
from controller.events import Event, EventBus, Overflow
from controller.runs.tables import StageRun
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler

#: Largest piece read from the file or merged from live events at once.
PIECE_BYTES = 512 * 1024
#: Queued log events hold their data; past this the reader reads the file instead.
QUEUE_EVENTS = 32
_KINDS = frozenset({"log", "stage"})


@dataclass(frozen=True)
class LogState:
    """Where an attempt's log stands: bytes stored, and whether more can come."""

    size: int
    finished: bool
    status: str


@dataclass(frozen=True)
class LogPiece:
    """Bytes [offset, offset + len(data)) of the log."""

    offset: int
    data: bytes


@dataclass(frozen=True)
class LogEnd:
    """No more bytes: the attempt finished (its status, or "retried"), or a non-following read ended."""

    size: int
    status: str
    finished: bool


@dataclass(frozen=True)
class Lagging:
    """The consumer fell more than `lag_limit` behind the live edge; it should start again at the tail."""

    offset: int


LogItem = LogPiece | LogEnd | Lagging


class LogReader:
    """One read of one attempt's log from `offset`; `follow` keeps reading until the attempt ends."""

    def __init__(
        self,
        scheduler: Scheduler,
        logs: LogStore,
        events: EventBus,
        run_id: UUID,
        stage: str,
        attempt: int,
        offset: int = 0,
        *,
        follow: bool = True,
        lag_limit: int | None = None,
    ) -> None:
        if offset < 0:
            raise Invalid("'offset' must be >= 0")
        self.scheduler = scheduler
        self.logs = logs
        self.events = events
        self.run_id = run_id
        self.stage = stage
        self.attempt = attempt
        self.follow = follow
        self.lag_limit = lag_limit
        self.path: Path = logs.find(run_id, stage, attempt)
        self.pos = offset  # bytes handed out so far
        self.caught_up = False  # reached the live edge of an unfinished attempt once

    async def state(self) -> LogState:
        """The attempt's recorded size and status: the scheduler's working copy, else the database."""
        run = self.scheduler.runs.get(self.run_id)
        live = run.stages.get(self.stage) if run is not None else None
        if live is not None:
            attempt, size, status = live.attempt, live.log_size, live.status
        else:
            await self.scheduler.settled()  # a run that just finished: read what its operation committed
            row = (
                await StageRun.select(StageRun.attempt, StageRun.log_size, StageRun.status)
                .where((StageRun.run == self.run_id) & (StageRun.name == self.stage))
                .first()
            )
            if row is None:
                raise NotFound(f"run {self.run_id} has no stage {self.stage!r} (any more)")
            attempt, size, status = row["attempt"], row["log_size"], StageStatus(row["status"])
        if not 1 <= self.attempt <= attempt:
            raise NotFound(
                f"stage {self.stage!r} of run {self.run_id} has no attempt {self.attempt} "
                f"(attempts: 1..{attempt})"
            )
        if self.attempt < attempt:  # superseded by a retry: its file is complete
            stored = await asyncio.to_thread(_file_size, self.path)
            return LogState(stored, True, "retried")
        return LogState(size, status.finished, status.value)

    async def items(self) -> AsyncIterator[LogItem]:
        """Pieces of the log in order, then one LogEnd (or Lagging); see the module docstring."""
        async with self.events.subscribe(self.run_id, _KINDS, limit=QUEUE_EVENTS) as queue:
            first = True
            while True:
                state = await self.state()
                if first and self.pos > state.size and (state.finished or not self.follow):
                    raise Invalid(
                        f"offset {self.pos} is past the end of the log of stage {self.stage!r} "
                        f"attempt {self.attempt} ({state.size} bytes); resume from at most {state.size}"
                    )
                first = False
                if (
                    self.lag_limit is not None
                    and self.caught_up
                    and not state.finished
                    and state.size - self.pos > self.lag_limit
                ):
                    yield Lagging(self.pos)
                    return
                async for piece in self._stored(state.size):
                    yield piece
                self.caught_up = self.caught_up or not state.finished
                if state.finished or not self.follow:
                    yield LogEnd(self.pos, state.status, state.finished)
                    return
                live = await self._live(queue)
                if live is not None:
                    yield live

    async def _stored(self, size: int) -> AsyncIterator[LogPiece]:
        """[pos, size) from the stored file, a piece at a time."""
        while self.pos < size:
            data = await asyncio.to_thread(self.logs.read, self.path, self.pos, size, PIECE_BYTES)
            if not data:  # the file is shorter than recorded (removed?): nothing more to read
                return
            piece = LogPiece(self.pos, data)
            self.pos += len(data)
            yield piece

    async def _live(self, queue: asyncio.Queue[Event | Overflow]) -> LogPiece | None:
        """Wait for events; merge every chunk that is already queued into one piece."""
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
                    if len(buf) >= PIECE_BYTES:
                        break
            try:
                event = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        if not buf:
            return None
        piece = LogPiece(self.pos, bytes(buf))
        self.pos += len(buf)
        return piece


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
