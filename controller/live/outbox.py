"""A connection's bounded send buffer: what waits to be written to one WebSocket.

Bounded by message count and by bytes, so a client that stops reading costs the controller a fixed
amount of memory. Messages carry a topic key; when an update does not fit, every pending message of
its topic is dropped and one `reload` goes out instead (the client re-reads that state), and further
updates of the topic are dropped until that reload has been written: the client will re-read them
anyway. Nothing here ever waits, except the writer (`get`) and a producer that chooses to
(`wait_room`, used by log followers, whose stored log file is their buffer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

MAX_MESSAGES = 1024
MAX_BYTES = 8 * 1024 * 1024


@dataclass
class _Item:
    key: Hashable
    text: str
    size: int
    reload: bool = False


class Outbox:
    """FIFO of JSON text frames with per-topic overflow handling (see the module docstring)."""

    def __init__(self, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[_Item] = deque()
        self._bytes = 0
        self._reloading: set[Hashable] = set()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.reloads_sent = 0

    @property
    def size(self) -> int:
        """Bytes waiting to be written."""
        return self._bytes

    def put(self, key: Hashable, text: str, reload_text: str) -> bool:
        """Queue `text` for topic `key`; on overflow queue `reload_text` instead. False if dropped."""
        if key in self._reloading:
            return False
        size = len(text)
        if len(self._items) < self.max_messages and self._bytes + size <= self.max_bytes:
            self._push(_Item(key, text, size))
            return True
        self._drop(key)
        self._reloading.add(key)
        # The reload is tiny and always queued, even past the bounds: it replaces what was dropped.
        self._push(_Item(key, reload_text, len(reload_text), reload=True))
        self.reloads_sent += 1
        return False

    def put_control(self, text: str) -> None:
        """Queue a reply to the client's own request (errors, log_end): small, never dropped."""
        self._push(_Item(None, text, len(text)))

    def has_room(self, share: float = 0.5) -> bool:
        """Whether less than `share` of the byte bound is used (and a message slot is free)."""
        return self._bytes < self.max_bytes * share and len(self._items) < self.max_messages

    async def wait_room(self, share: float = 0.5) -> None:
        """Wait until `has_room(share)`: lets a producer that can catch up later (logs) keep pace."""
        while not self.has_room(share):
            self._room.clear()
            await self._room.wait()

    async def get(self) -> str:
        """The next frame to write, waiting until there is one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        self._bytes -= item.size
        if item.reload:
            self._reloading.discard(item.key)
        self._room.set()
        return item.text

    def discard(self, key: Hashable) -> None:
        """Drop everything pending for `key` (the client stopped watching it)."""
        self._drop(key)
        self._reloading.discard(key)

    def _push(self, item: _Item) -> None:
        self._items.append(item)
        self._bytes += item.size
        self._ready.set()

    def _drop(self, key: Hashable) -> None:
        kept = deque(item for item in self._items if item.key != key or item.key is None)
        if len(kept) != len(self._items):
            self._items = kept
            self._bytes = sum(item.size for item in kept)
            self._room.set()
