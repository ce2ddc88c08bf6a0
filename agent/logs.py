"""Stage output shipping: batching lines into acknowledged chunks, masked as each chunk is cut.

Masking (`agent.masking`) happens before output leaves the machine: the shipper masks the text of
each chunk as it cuts it, so a secret does not appear in any log, however it was printed.

`LogShipper` is the agent's side of AgentService.StreamLogs, without the transport: it batches lines
into sequence-numbered chunks per lease and keeps every chunk until the controller acknowledges it, so
whatever happens to the connection, the stored log ends up with neither gaps nor duplicates.
`agent.logstream` owns the gRPC stream and moves chunks and acks between it and the shipper.

Throughput: a chatty stage prints hundreds of thousands of lines a second, and everything done per
line in Python (an object, a protobuf message) costs more than the line itself. A stage's log is one
combined byte stream (stdout, stderr and BuildIt's own lines in the order they were read), so the
lines of a chunk are packed into one `LogLine` whose text joins them with "\n": the controller
appends `text + "\n"` per `LogLine`, which gives the same bytes as one `LogLine` per line. Masking
works on that joined text too: a handful of substring searches over a chunk instead of a Python call
per line (with the agent token always masked, per-line masking cost a third of a line's time). Forms
never contain a newline, except the whole of a multi-line value, which is then masked line by line
as it would have been anyway; a line is never split between chunks (the pieces of an over-long line
are joined across their cuts before they get here, see `agent.masking.PieceMasker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from agent.contract import logmarks
from agent.contract.types import LogAck, LogChunk, LogLine
from agent.masking import MASK, Masker

__all__ = ["MASK", "LogShipper", "Masker"]

log = logging.getLogger(__name__)

# --- shipping ----------------------------------------------------------------------------------------

FLUSH_INTERVAL_S: Final = 0.05
MAX_CHUNK_LINES: Final = 50_000
MAX_CHUNK_BYTES: Final = 1024 * 1024
MAX_UNACKED_BYTES: Final = 64 * 1024 * 1024
# Estimates used for the limits: the wire cost of a line beyond its text (its "\n" inside the packed
# LogLine; the LogLine's own framing is counted once per chunk), and its in-memory cost (the str
# header and list slot), which is what the memory bound is for.
_WIRE_OVERHEAD: Final = 1
_LOGLINE_WIRE_OVERHEAD: Final = 24
_MEMORY_OVERHEAD: Final = 64


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


@dataclass
class _Chunk:
    chunk: LogChunk
    memory: int


@dataclass(eq=False)
class _LeaseLog:
    lease_id: str
    #: Applied to the text of each chunk as it is cut (None: nothing to mask).
    mask: Callable[[str], str] | None = None
    next_seq: int = 1
    acked_seq: int = 0
    # the lines of the next chunk, packed into its one LogLine when it is cut
    texts: list[str] = field(default_factory=list)
    pending_lines: int = 0
    pending_wire: int = 0
    pending_memory: int = 0
    timer: asyncio.TimerHandle | None = None
    unacked: deque[_Chunk] = field(default_factory=deque)
    unacked_memory: int = 0
    # seqs sent on the current stream and not yet answered, oldest first (acks come back in order)
    inflight: deque[int] = field(default_factory=deque)
    dropped_lines: int = 0
    dropped_bytes: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    gone: bool = False

    @property
    def memory(self) -> int:
        return self.pending_memory + self.unacked_memory


class LogShipper:
    """Per-lease batching and acknowledgement bookkeeping for one agent's log stream.

    Producer side (the stage): `open` (with the lease's masker), `add` for each line (synchronous, so
    it can sit behind an executor's output callback), `wait_acked` once the stage ended, `discard`
    when done or lost.
    Transport side (the stream): `rewind` whenever a new stream starts, `next_chunk` to get the next
    chunk to write, `acknowledge` for every LogAck read.

    A chunk is cut when it reaches `max_chunk_lines` lines or `max_chunk_bytes` bytes, or
    `flush_interval_s` after its first line, whichever comes first. Chunks of a lease are numbered 1,
    2, 3, ... and kept until a LogAck with acked_seq >= seq arrives. After `rewind` (a new stream)
    every unacknowledged chunk goes out again, in order, which the controller deduplicates by seq.

    Memory is bounded: when more than `max_unacked_bytes` of one lease's output waits for an
    acknowledgement (the controller is away or slower than the stage), further lines of that lease are
    dropped and counted, and a line saying how many were dropped ("buildit: N line(s) ... dropped",
    one of BuildIt's marked notes) is logged as soon as there is room again (or when the stage
    ends). Blocking the stage instead would need every executor to stop reading its output, and an
    unbounded queue would let one chatty stage take the host's memory.
    """

    def __init__(
        self,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_chunk_lines: int = MAX_CHUNK_LINES,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
        max_unacked_bytes: int = MAX_UNACKED_BYTES,
        on_lease_lost: Callable[[str], None] | None = None,
    ) -> None:
        """`on_lease_lost(lease_id)` is called when an ack says the lease is no longer ours."""
        self.flush_interval_s = flush_interval_s
        self.max_chunk_lines = max_chunk_lines
        self.max_chunk_bytes = max_chunk_bytes
        self.max_unacked_bytes = max_unacked_bytes
        self.on_lease_lost = on_lease_lost
        self._leases: dict[str, _LeaseLog] = {}
        self._outbox: deque[tuple[str, int]] = deque()
        self._ready = asyncio.Event()

    # --- producer side

    def open(self, lease_id: str, mask: Callable[[str], str] | None = None) -> None:
        """Start the log of a lease (seq 1 comes next); a no-op when it is already open.

        `mask` (an `agent.masking.Masker`) is applied to the text of every chunk as it is cut: no
        line leaves the agent unmasked, and masking costs a few searches per chunk, not a call per line.
        """
        if lease_id not in self._leases:
            self._leases[lease_id] = _LeaseLog(lease_id, mask if mask else None)

    def add(self, lease_id: str, text: str) -> None:
        """Queue one line of a lease (masked when its chunk is cut); ignored when the lease is not open.

        Called once per output line, so it does as little as it can: the line joins the lines of
        the next chunk, and the LogLine and LogChunk objects are made once per chunk, not per line.
        """
        lease = self._leases.get(lease_id)
        if lease is None or lease.gone:
            return
        size = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
        if lease.pending_memory + lease.unacked_memory + size + _MEMORY_OVERHEAD > self.max_unacked_bytes:
            if lease.dropped_lines == 0:
                log.warning(
                    "lease %s: over %d bytes of log unacknowledged; dropping output until the "
                    "controller catches up",
                    lease_id,
                    self.max_unacked_bytes,
                )
            lease.dropped_lines += 1
            lease.dropped_bytes += size
            return
        if lease.dropped_lines:
            self._note_dropped(lease)
        self._append(lease, text, size)

    def flush(self, lease_id: str) -> None:
        """Cut the lines queued for a lease into a chunk now (e.g. when its stage ended)."""
        lease = self._leases.get(lease_id)
        if lease is None or lease.gone:
            return
        if lease.dropped_lines:
            self._note_dropped(lease)
        self._cut(lease)

    async def wait_acked(self, lease_id: str, timeout: float) -> bool:
        """Flush the lease's queued lines, then wait until every chunk of it is acknowledged.

        True once everything produced so far is acknowledged; False on timeout, or when the lease is
        lost or discarded meanwhile (its remaining chunks will never be stored).
        """
        lease = self._leases.get(lease_id)
        if lease is None or lease.gone:
            return False
        self.flush(lease_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if lease.gone:
                return False
            if not lease.unacked and not lease.pending_lines:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            lease.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await lease.progress.wait()

    def discard(self, lease_id: str) -> None:
        """Forget a lease: after its final update, or with everything unsent when the lease is lost."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        lease.gone = True
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        lease.texts.clear()
        lease.pending_lines = 0
        lease.unacked.clear()
        lease.inflight.clear()
        lease.pending_memory = lease.unacked_memory = 0
        lease.progress.set()

    def unsent(self, lease_id: str) -> tuple[LogChunk, ...]:
        """Every chunk of the lease the controller has not acknowledged, queued lines cut first.

        What a stopping agent keeps for its next start (see agent.pending), masked already.
        """
        lease = self._leases.get(lease_id)
        if lease is None or lease.gone:
            return ()
        self.flush(lease_id)
        return tuple(item.chunk for item in lease.unacked)

    def restore(self, lease_id: str, chunks: tuple[LogChunk, ...]) -> None:
        """Open a lease's log with chunks kept by an earlier process of this agent, to send again.

        They keep their sequence numbers: the controller stores what it lacks and acknowledges
        what it has (a chunk it got before the acknowledgement was lost is not stored twice).
        """
        self.open(lease_id)
        lease = self._leases[lease_id]
        if not chunks:
            return
        lease.acked_seq = chunks[0].seq - 1
        lease.next_seq = chunks[-1].seq + 1
        for chunk in chunks:
            lease.unacked.append(_Chunk(chunk, 0))
            self._outbox.append((lease_id, chunk.seq))
        self._ready.set()

    def unacked(self, lease_id: str) -> int:
        """How many chunks of the lease wait for an acknowledgement (0 for an unknown lease)."""
        lease = self._leases.get(lease_id)
        return len(lease.unacked) if lease is not None else 0

    def buffered_bytes(self, lease_id: str) -> int:
        """Estimated memory held for the lease's queued and unacknowledged lines."""
        lease = self._leases.get(lease_id)
        return lease.memory if lease is not None else 0

    def dropped_lines(self, lease_id: str) -> int:
        """Lines of the lease dropped and not yet reported by a "buildit: ... dropped" line."""
        lease = self._leases.get(lease_id)
        return lease.dropped_lines if lease is not None else 0

    # --- transport side

    def rewind(self) -> None:
        """A new stream starts: queue every unacknowledged chunk of every lease again, in order."""
        self._outbox.clear()
        for lease in self._leases.values():
            lease.inflight.clear()
            self._outbox.extend((lease.lease_id, item.chunk.seq) for item in lease.unacked)
        if self._outbox:
            self._ready.set()

    async def next_chunk(self) -> LogChunk:
        """The next chunk to write on the stream, waiting until there is one."""
        while True:
            while self._outbox:
                lease_id, seq = self._outbox.popleft()
                lease = self._leases.get(lease_id)
                if lease is None or not lease.unacked or seq <= lease.acked_seq:
                    continue  # discarded, or acknowledged meanwhile
                item = lease.unacked[seq - lease.unacked[0].chunk.seq]
                lease.inflight.append(seq)
                return item.chunk
            self._ready.clear()
            await self._ready.wait()

    def acknowledge(self, ack: LogAck) -> bool:
        """Apply one LogAck. False when it reveals a gap, i.e. the stream must be restarted.

        Acks answer chunks in the order they were written, so the ack for a chunk with seq s normally
        says acked_seq >= s. An acked_seq below the chunk it answers means the controller is missing an
        earlier chunk; restarting the stream (`rewind`) resends from acked_seq + 1.
        """
        lease = self._leases.get(ack.lease_id)
        if lease is None:
            return True  # already finished or discarded
        if ack.lease_lost:
            self.discard(ack.lease_id)
            if self.on_lease_lost is not None:
                self.on_lease_lost(ack.lease_id)
            return True
        answered = lease.inflight.popleft() if lease.inflight else None
        acked = min(ack.acked_seq, lease.next_seq - 1)
        if acked > lease.acked_seq:
            lease.acked_seq = acked
            while lease.unacked and lease.unacked[0].chunk.seq <= acked:
                lease.unacked_memory -= lease.unacked.popleft().memory
            lease.progress.set()
        return answered is None or ack.acked_seq >= answered

    # --- internals

    def _append(self, lease: _LeaseLog, text: str, size: int) -> None:
        wire = size + _WIRE_OVERHEAD
        if lease.pending_lines and lease.pending_wire + wire > self.max_chunk_bytes:
            self._cut(lease)
        if not lease.pending_lines:
            wire += _LOGLINE_WIRE_OVERHEAD
        lease.texts.append(text)
        lease.pending_lines += 1
        lease.pending_wire += wire
        lease.pending_memory += size + _MEMORY_OVERHEAD
        if lease.pending_lines >= self.max_chunk_lines or lease.pending_wire >= self.max_chunk_bytes:
            self._cut(lease)
        elif lease.timer is None:
            loop = asyncio.get_running_loop()
            lease.timer = loop.call_later(self.flush_interval_s, self._cut, lease)

    def _cut(self, lease: _LeaseLog) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        if lease.gone or not lease.pending_lines:
            return
        text = "\n".join(lease.texts)
        if lease.mask is not None:
            text = lease.mask(text)
        chunk = LogChunk(lease.lease_id, lease.next_seq, (LogLine(text),))
        lease.next_seq += 1
        lease.unacked.append(_Chunk(chunk, lease.pending_memory))
        lease.unacked_memory += lease.pending_memory
        lease.texts = []
        lease.pending_lines = lease.pending_wire = lease.pending_memory = 0
        self._outbox.append((lease.lease_id, chunk.seq))
        self._ready.set()

    def _note_dropped(self, lease: _LeaseLog) -> None:
        """Log how much output was dropped (beyond the memory bound, so the gap is never silent)."""
        text = logmarks.line(
            logmarks.NOTE,
            text=f"buildit: {lease.dropped_lines} line(s) ({lease.dropped_bytes} bytes) of output dropped: "
            "the controller did not acknowledge logs fast enough",
        )
        lease.dropped_lines = lease.dropped_bytes = 0
        self._append(lease, text, _utf8_len(text))
