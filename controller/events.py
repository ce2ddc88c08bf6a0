"""In-process publish/subscribe for live updates (gRPC watchers now, the web UI later).

Publishing never blocks the scheduler: each subscriber has a bounded queue, and one that falls
behind gets an `Overflow` marker instead of more events (it should re-read the state). A log event
carries the byte offset its data starts at, so a follower that also reads the stored file can drop
what it already has and notice a gap (after an Overflow) without any other bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class Event:
    """Something changed: `kind` is run | stage | agent | log; `subject` the changed object.

    `subject` is the scheduler's live object, which may have changed again by the time a
    subscriber looks at it; a log event's `offset` (where `data` starts in the stage attempt's log)
    and `attempt` are fixed when it is published.
    """

    kind: str
    run_id: UUID | None
    subject: Any
    data: bytes = b""
    offset: int = 0
    attempt: int = 0


@dataclass(frozen=True)
class Overflow:
    """The subscriber fell behind and missed events."""


class EventBus:
    """Fan-out of events to subscribers, optionally filtered by run."""

    def __init__(self) -> None:
        self._subscribers: dict[
            int, tuple[UUID | None, frozenset[str] | None, int, asyncio.Queue[Event | Overflow]]
        ] = {}
        self._next = 0

    def _publish(self, event: Event) -> None:
        for run_filter, kinds, limit, queue in self._subscribers.values():
            if run_filter is not None and run_filter != event.run_id:
                continue
            if kinds is not None and event.kind not in kinds:
                continue
            if queue.qsize() >= limit - 1:
                if queue.qsize() < limit:
                    queue.put_nowait(Overflow())
                continue
            queue.put_nowait(event)

    def publish_run(self, run: Any) -> None:
        """A run's status changed (or it was created)."""
        self._publish(Event("run", run.id, run))

    def publish_stage(self, stage: Any) -> None:
        """A stage changed."""
        self._publish(Event("stage", stage.run_id, stage))

    def publish_agent(self, agent: Any) -> None:
        """An agent connected, disconnected or changed mode."""
        self._publish(Event("agent", None, agent))

    def publish_log(self, stage: Any, data: bytes) -> None:
        """Log bytes were appended to a stage's log (`stage.log_size` already counts them)."""
        self._publish(Event("log", stage.run_id, stage, data, stage.log_size - len(data), stage.attempt))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, run_id: UUID | None = None, kinds: frozenset[str] | None = None, limit: int = QUEUE_LIMIT
    ) -> AsyncIterator[asyncio.Queue[Event | Overflow]]:
        """A queue receiving events (for one run, or all; of some kinds, or all) while open.

        At most `limit` entries wait in it, the last being an `Overflow` once it is full: a small
        limit suits a subscriber that can re-read what it missed (a log follower reads the file),
        since queued log events hold their data.
        """
        if limit < 2:
            raise ValueError(
                f"subscribe(limit={limit}): the limit must be at least 2 (an event and Overflow)"
            )
        self._next += 1
        key = self._next
        queue: asyncio.Queue[Event | Overflow] = asyncio.Queue()
        self._subscribers[key] = (run_id, kinds, limit, queue)
        try:
            yield queue
        finally:
            self._subscribers.pop(key, None)
