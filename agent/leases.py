"""How the agent receives leases and keeps them: the Lease stream and the heartbeat.

* **Lease stream** – exactly one `Lease` call is open at a time; it is reopened with jittered
  exponential backoff (0.1 s doubling to 5 s, reset once a stream worked) whenever it ends. Leases
  survive a broken stream: a running stage keeps running while the controller is away. The stream
  pushes leases, cancels and the controller's Drain, handed to the agent that holds the leases.
* **Heartbeat** – every `heartbeat_interval_s` (at once when draining starts), listing the running
  leases (which extends them) and the free slots. Its answer names leases lost meanwhile, asks for a
  drain, or reports an operator's drain. An operator's drain (HeartbeatResponse.operator_drain) is
  not the agent's: it only logs it and stays up, because the controller simply offers no leases
  until the operator resumes it.

A call refused for good (FATAL, see `agent.client.classify`) ends the agent (`agent.errors.refused`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from agent.backoff import Backoff, sleep_unless
from agent.client import FailureKind, LeaseStream, RpcFailure, classify
from agent.contract.types import (
    CancelReason,
    CancelStage,
    Drain,
    HeartbeatRequest,
    LeaseEvent,
    LeaseRequest,
    Ping,
    StageLease,
)
from agent.errors import AgentExit, refused
from agent.session import Session

__all__ = ["LeaseHolder", "LeaseLoops"]

log = logging.getLogger("agent")


class LeaseHolder(Protocol):
    """What the lease and heartbeat loops need of the agent that holds the leases (`agent.runner`)."""

    @property
    def draining(self) -> bool:
        """True once the agent stopped taking leases."""
        ...

    @property
    def free_slots(self) -> int:
        """Slots free for new leases (0 while draining)."""
        ...

    @property
    def running_lease_ids(self) -> tuple[str, ...]:
        """Leases held right now."""
        ...

    def take(self, lease: StageLease) -> None:
        """Start the stage of a new lease."""
        ...

    def cancel(self, lease_id: str, reason: CancelReason, message: str = "") -> None:
        """Stop the stage of a lease (as the controller asked)."""
        ...

    def lose(self, lease_id: str, why: str) -> None:
        """The lease is no longer ours: stop its stage and report nothing more."""
        ...

    def drain(self, reason: str) -> None:
        """Take no new leases; finish the running stages."""
        ...


class LeaseLoops:
    """The Lease stream loop and the heartbeat loop of one agent (run each as a task)."""

    def __init__(self, session: Session, holder: LeaseHolder) -> None:
        self._session = session
        self._holder = holder
        self._stream: LeaseStream | None = None
        self._operator_drained = False
        self._heartbeat_now = asyncio.Event()

    def close_stream(self) -> None:
        """Close the open Lease stream, if any (draining, stopping, or a new token to reopen it with)."""
        if self._stream is not None:
            self._stream.cancel()

    def heartbeat_soon(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval (e.g. draining started)."""
        self._heartbeat_now.set()

    async def lease_loop(self) -> None:
        """Keep exactly one Lease stream open until draining; reopen it with backoff when it ends."""
        session, holder = self._session, self._holder
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        failures = 0
        while not holder.draining:
            token = session.client.token
            stream = session.client.open_lease_stream(
                LeaseRequest(session.agent_id, holder.free_slots, holder.running_lease_ids)
            )
            self._stream = stream
            opened = loop.time()
            working = False
            try:
                async with contextlib.aclosing(stream.events()) as events:
                    async for event in events:
                        if not working:
                            working = True
                            failures = 0
                            backoff.reset()
                            session.authenticated()
                        self._on_event(event)
                        if holder.draining:
                            break
                reason = "closed by the controller"
            except RpcFailure as exc:
                if holder.draining:
                    break
                kind = classify(exc.code, lease_scoped=False)
                if kind is FailureKind.REAUTHENTICATE:
                    await session.reauthenticate(token, exc)
                    continue
                if kind is FailureKind.FATAL:
                    raise refused("the Lease stream", exc) from None
                reason = await session.stop_if_misconfigured(exc) or str(exc)
            except (AgentExit, asyncio.CancelledError):
                raise
            except Exception as exc:  # a bug in handling an event must not end the agent
                log.exception("lease stream failed unexpectedly")
                reason = repr(exc)
            finally:
                stream.cancel()
                self._stream = None
            if holder.draining:
                break
            if loop.time() - opened >= backoff.maximum:
                backoff.reset()
            failures += 1
            delay = backoff.next()
            # The loss of a working connection is news; each further failed attempt is not.
            if failures == 1 or failures % 12 == 0:
                log.warning("lease stream ended (%s); reconnecting", reason)
            else:
                log.debug("lease stream attempt failed (%s); retrying in %.2fs", reason, delay)
            await sleep_unless(delay, lambda: holder.draining)

    def _on_event(self, event: LeaseEvent | None) -> None:
        holder = self._holder
        if isinstance(event, StageLease):
            holder.take(event)
        elif isinstance(event, CancelStage):
            holder.cancel(event.lease_id, event.reason, event.message)
        elif isinstance(event, Drain):
            holder.drain(f"requested by the controller{': ' + event.reason if event.reason else ''}")
        elif isinstance(event, Ping):
            pass
        else:
            log.debug("ignoring a lease stream event this agent version does not know")

    async def heartbeat_loop(self) -> None:
        """Heartbeat every interval (at once when draining starts); act on lost leases and drains."""
        while True:
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
                async with asyncio.timeout(self._session.heartbeat_interval_s):
                    await self._heartbeat_now.wait()
            self._heartbeat_now.clear()
            try:
                await self.heartbeat()
            except (AgentExit, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("heartbeat failed unexpectedly")

    async def heartbeat(self, timeout: float | None = None, *, reauthenticate: bool = True) -> None:
        """One heartbeat. `reauthenticate=False` for the goodbye at shutdown: best effort, no reaction."""
        session, holder = self._session, self._holder
        token = session.client.token
        request = HeartbeatRequest(
            session.agent_id, holder.running_lease_ids, holder.free_slots, holder.draining
        )
        try:
            if timeout is None:
                response = await session.client.heartbeat(request)
            else:
                async with asyncio.timeout(timeout):
                    response = await session.client.heartbeat(request)
        except TimeoutError:
            return
        except RpcFailure as exc:
            kind = classify(exc.code, lease_scoped=False)
            if not reauthenticate:
                log.debug("heartbeat failed: %s", exc)
            elif kind is FailureKind.REAUTHENTICATE:
                await session.reauthenticate(token, exc)
            elif kind is FailureKind.FATAL:
                raise refused("heartbeats", exc) from None
            else:
                log.debug("heartbeat failed: %s", exc)
            return
        session.authenticated()
        for lease_id in response.lost_lease_ids:
            holder.lose(lease_id, "heartbeat")
        if response.operator_drain != self._operator_drained:
            # An operator's drain: the controller offers nothing until resumed. Stay up (no drain
            # of our own, which would end the process), so a resume brings work back at once.
            self._operator_drained = response.operator_drain
            log.info(
                "drained by an operator: running stages finish, no new ones until resumed"
                if response.operator_drain
                else "resumed by an operator: taking stages again"
            )
        if response.draining and not response.operator_drain and not holder.draining:
            holder.drain("requested by the controller")
