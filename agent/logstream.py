"""The agent's one StreamLogs call: chunks out, acks in, for the output of every lease it holds.

`agent.logs.LogShipper` batches and numbers the output and keeps every chunk until it is
acknowledged; this loop owns the gRPC stream and moves chunks and acks between it and the shipper.
After every (re)connect, everything not yet acknowledged is sent again, in order, so the stored log
has neither gaps nor duplicates. An ack below what it answers reveals a gap at the controller: the
stream is restarted at once, which resends from there. A refused token re-registers (`Session`);
a call refused for good (FATAL, see `agent.client.classify`) ends the agent.
"""

from __future__ import annotations

import asyncio
import logging

from agent.backoff import Backoff
from agent.client import FailureKind, LogStreamCall, RpcFailure, classify
from agent.errors import AgentExit, refused
from agent.logs import LogShipper
from agent.session import Session

__all__ = ["LogStreamLoop"]

log = logging.getLogger("agent")


class LogStreamLoop:
    """Keeps one StreamLogs stream open for `shipper` (run `run()` as a task)."""

    def __init__(self, session: Session, shipper: LogShipper) -> None:
        self._session = session
        self._shipper = shipper
        self._call: LogStreamCall | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        """True while the stream works end to end (an ack came back on it)."""
        return self._connected

    def reopen(self) -> None:
        """End the current stream (it carries an old token); the loop opens a new one."""
        if self._call is not None:
            self._call.cancel()

    async def run(self) -> None:
        """Keep one StreamLogs stream open; on every (re)connect, resend all unacknowledged chunks."""
        session = self._session
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            token = session.client.token
            call = session.client.open_log_stream()
            self._call = call
            self._shipper.rewind()
            opened = loop.time()
            progress = asyncio.Event()
            reader = asyncio.create_task(self._read_acks(call, progress))
            writer = asyncio.create_task(self._write_chunks(call))
            failure: RpcFailure | None = None
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._connected = False
                self._call = None
                call.cancel()
                for task in (reader, writer):
                    task.cancel()
                results = await asyncio.gather(reader, writer, return_exceptions=True)
            for result in results:
                if isinstance(result, AgentExit):
                    raise result
                if isinstance(result, RpcFailure) and failure is None:
                    failure = result
                elif isinstance(result, Exception) and not isinstance(result, RpcFailure):
                    # Whatever broke, the remedy is the same: a new stream resends what is unacked.
                    log.warning("log stream failed unexpectedly; reconnecting", exc_info=result)
            if failure is not None:
                kind = classify(failure.code, lease_scoped=False)
                if kind is FailureKind.REAUTHENTICATE:
                    await session.reauthenticate(token, failure)
                    continue
                if kind is FailureKind.FATAL:
                    raise refused("the log stream (StreamLogs)", failure)
            gap = results[0] is False
            if progress.is_set() or loop.time() - opened >= backoff.maximum:
                backoff.reset()
            if gap:  # reconnect soon (the backoff was just reset), and never in a tight loop
                log.info("log stream: the controller is missing chunks; resending from its last ack")
            delay = backoff.next()
            log.debug("log stream ended (%s); reconnecting in %.2fs", failure or "closed", delay)
            await asyncio.sleep(delay)

    async def _read_acks(self, call: LogStreamCall, progress: asyncio.Event) -> bool:
        """Apply acks until the stream ends (True) or an ack reveals a gap (False)."""
        while True:
            ack = await call.receive()
            if ack is None:
                return True
            progress.set()
            self._connected = True  # an ack proves the stream works end to end
            self._session.authenticated()
            if not self._shipper.acknowledge(ack):
                return False

    async def _write_chunks(self, call: LogStreamCall) -> None:
        while True:
            chunk = await self._shipper.next_chunk()
            await call.send(chunk)
