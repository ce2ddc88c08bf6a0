"""Fan-out of run, stage and agent changes to the WebSocket connections watching them.

One subscription to the event bus for the whole process (while any connection is open), one
rendering per change and tenant watching it (a database read), and the rendered frame handed to
each watcher's outbox, which never blocks: a slow connection gets `reload` instead of slowing the
others. If the hub itself falls behind the bus it tells every watcher to reload.

Each watcher acts in its caller's tenant (`Watcher.deps`): a change is rendered for that tenant
and sent only when it belongs there, so a socket never carries another tenant's runs or agents.
The hub's own `svc` (whichever connection made it) serves only the bus and the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Any, Protocol
from uuid import UUID

from controller.deps import Deps
from controller.events import Event, Overflow
from controller.live import render

log = logging.getLogger(__name__)

_KINDS = frozenset({"run", "stage", "agent"})
RUNS: Hashable = ("runs",)
AGENTS: Hashable = ("agents",)


def run_key(run_id: UUID) -> Hashable:
    """The topic key of one run (and its stages)."""
    return ("run", run_id)


class Watcher(Protocol):
    """A connection as the hub sees it."""

    #: The parts scoped to the connection's caller: their tenant decides what it is sent.
    deps: Deps

    def deliver(self, key: Hashable, message: dict[str, Any]) -> None:
        """Queue a message of topic `key` (never blocks)."""

    def reload(self, key: Hashable) -> None:
        """Tell the client it missed updates of topic `key`."""


class LiveHub:
    """Topic registry and the task that turns bus events into frames for the watchers."""

    def __init__(self, svc: Deps) -> None:
        self.svc = svc
        self._watchers: dict[Hashable, set[Watcher]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connections = 0

    def connect(self) -> None:
        """A connection opened: make sure the bus is being listened to."""
        self._connections += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name="live-hub")

    async def disconnect(self, watcher: Watcher) -> None:
        """A connection closed: forget its topics; stop listening when it was the last one."""
        for watchers in self._watchers.values():
            watchers.discard(watcher)
        self._watchers = {k: v for k, v in self._watchers.items() if v}
        self._connections -= 1
        task = self._task
        if self._connections <= 0 and task is not None:
            self._task = None  # before awaiting: a connection arriving meanwhile starts a new pump
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def watch(self, key: Hashable, watcher: Watcher) -> None:
        """Start sending topic `key` to `watcher`."""
        self._watchers.setdefault(key, set()).add(watcher)

    def unwatch(self, key: Hashable, watcher: Watcher) -> None:
        """Stop sending topic `key` to `watcher`."""
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[key]

    async def _pump(self) -> None:
        async with self.svc.events.subscribe(kinds=_KINDS) as queue:
            while True:
                event = await queue.get()
                try:
                    if isinstance(event, Overflow):
                        for key, watchers in list(self._watchers.items()):
                            for watcher in list(watchers):
                                watcher.reload(key)
                    elif self._wanted(event):
                        await render.settled(self.svc)
                        await self._dispatch(event)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one bad render must not end live updates for everyone
                    log.exception("live updates: could not render a %s event", getattr(event, "kind", "?"))

    def _by_tenant(self, *keys: Hashable) -> dict[UUID, tuple[Deps, list[tuple[Hashable, Watcher]]]]:
        """The watchers of `keys` grouped by the tenant they act in (with one's deps to render)."""
        groups: dict[UUID, tuple[Deps, list[tuple[Hashable, Watcher]]]] = {}
        for key in keys:
            for watcher in list(self._watchers.get(key, ())):
                groups.setdefault(watcher.deps.tenant, (watcher.deps, []))[1].append((key, watcher))
        return groups

    @staticmethod
    def _send(targets: list[tuple[Hashable, Watcher]], message: dict[str, Any] | None) -> None:
        if message is None:
            return  # not this tenant's
        for key, watcher in targets:
            watcher.deliver(key, message)

    def _wanted(self, event: Event) -> bool:
        if event.kind == "agent":
            return bool(self._watchers.get(AGENTS))
        key = run_key(event.run_id) if event.run_id is not None else None
        return bool(self._watchers.get(key) or (event.kind == "run" and self._watchers.get(RUNS)))

    async def _dispatch(self, event: Event) -> None:
        if event.kind == "agent":
            for deps, targets in self._by_tenant(AGENTS).values():
                self._send(targets, await render.agent_message(deps, event.subject.id))
            return
        assert event.run_id is not None
        key = run_key(event.run_id)
        if event.kind == "run":
            groups = self._by_tenant(RUNS, key)
            if groups:
                tenant, message = await render.run_message_of(event.run_id)
                if tenant in groups:
                    self._send(groups[tenant][1], message)
        elif event.kind == "stage" and self._watchers.get(key):
            # Only connections whose tenant owns the run watch its key (checked when they asked).
            targets = [(key, watcher) for watcher in list(self._watchers.get(key, ()))]
            for stage in await render.stage_messages(event.run_id, event.subject.name):
                self._send(targets, stage)
