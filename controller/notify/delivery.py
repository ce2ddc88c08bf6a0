"""Delivering notifications in the background: durable, retried, bounded, never in a run's way.

How a delivery travels:

1. A run finishes: the scheduler publishes it on the event bus and goes on; it never waits for
   a receiver. The worker, following run events, writes one `NotificationDelivery` row per
   notification that wants the run (controller.notify.services.enqueue_for_run: idempotent, the
   row is unique per notification and finish). A start, or an event overflow, catches up on the
   runs that finished in the last hour.
2. The sender takes due rows, at most `concurrency` at a time. Each attempt is claimed in the
   database first (the attempt counted, the row held for the request's timeout), then POSTed
   with the signature headers (controller.notify.signing), a `timeout_s` limit and no redirect
   followed.
3. A 2xx answer delivers it. Anything else (another status, a refused connection, a timeout) is
   recorded (status code, error) and retried after `retry_base_s * 2^(attempt-1)` seconds, at
   most `max_delay_s`, until `max_attempts` attempts failed: the delivery is then `failed`.

Every state is a row, so a controller stopped (or killed) mid-retry resumes where it was: the next
start finds the pending rows and sends them when due. With several replicas, the claim (an update
conditioned on the attempt count) makes one of them send each attempt.

Proxies from the environment are not used (`trust_env=False`): a notification goes to the host
its URL names, which is what `controller.notify.commands` allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from controller import __version__
from controller.events import EventBus, Overflow
from controller.notify import services, signing
from controller.notify.services import Due
from controller.secrets.crypto import SecretBox
from controller.settings import ControllerSettings

log = logging.getLogger(__name__)

#: How far back a start (or an event overflow) looks for finished runs to notify about.
CATCH_UP = timedelta(hours=1)
#: How often the sender looks for due deliveries when nothing woke it (rows other replicas wrote).
POLL_S = 30.0
#: Bytes of a refusing receiver's answer kept in the delivery log.
SNIPPET_BYTES = 200


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retries, timeouts and concurrency of deliveries (BUILDIT_NOTIFY_* settings)."""

    retry_base_s: float = 10.0
    max_attempts: int = 8
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0
    concurrency: int = 4

    @classmethod
    def of(cls, settings: ControllerSettings) -> DeliveryPolicy:
        """The policy a controller was configured with."""
        return cls(settings.notify_retry_s, settings.notify_attempts, timeout_s=settings.notify_timeout_s)

    def delay_s(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failed attempt."""
        return float(min(self.retry_base_s * 2 ** (failed_attempts - 1), self.max_delay_s))


class DeliveryWorker:
    """See the module docstring. `start()` after the database is open; `stop()` before it closes."""

    def __init__(
        self, events: EventBus, box: SecretBox, public_url: str, policy: DeliveryPolicy | None = None
    ) -> None:
        self.events = events
        self.box = box
        self.public_url = public_url
        self.policy = policy or DeliveryPolicy()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[UUID, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None
        # (services.notifications_version() when loaded, tenants with notifications).
        self._notified: tuple[int, frozenset[UUID]] | None = None

    async def start(self) -> None:
        """Follow run events, send what is due (deliveries left by an earlier process too)."""
        self._client = httpx.AsyncClient(
            timeout=self.policy.timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": f"BuildIt/{__version__}"},
        )
        ready = asyncio.Event()
        self._spawn(self._follow(ready), "notify-follow")
        self._spawn(self._send_loop(), "notify-send")
        self._spawn(self._catch_up(), "notify-catch-up")
        await ready.wait()

    async def stop(self) -> None:
        """Stop following and sending; an attempt cut off is retried by the next start."""
        tasks = [*self._tasks, *self._inflight.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ finished runs -> rows

    async def _follow(self, ready: asyncio.Event) -> None:
        async with self.events.subscribe(kinds=frozenset({"run"})) as queue:
            ready.set()
            while True:
                event = await queue.get()
                if isinstance(event, Overflow):
                    self._spawn(self._catch_up(), "notify-catch-up")
                    continue
                run = event.subject
                if not run.status.finished or run.tenant is None:
                    continue
                try:
                    if run.tenant not in await self._notified_tenants():
                        continue
                    made = await services.enqueue_for_run(
                        run.id, run.tenant, run.pipeline_id, self.public_url
                    )
                except Exception:
                    log.exception("notifications of run %s could not be enqueued", run.id)
                    continue
                if made:
                    self._wake.set()

    async def _notified_tenants(self) -> frozenset[UUID]:
        """The tenants with notifications, loaded again only after this process changed them.

        Why: every finished run asks, and most tenants have no notification; a query per run
        was 5% of the controller's CPU in the throughput bench. Notifications are created and
        deleted through this process (one controller per database today; several replicas,
        issue 14, will have to tell each other).
        """
        version = services.notifications_version()  # read first: a change meanwhile reloads
        if self._notified is None or self._notified[0] != version:
            self._notified = (version, await services.tenants_with_notifications())
        return self._notified[1]

    async def _catch_up(self) -> None:
        try:
            made = 0
            for run_id, tenant, pipeline in await services.recently_finished_runs(
                datetime.now(UTC) - CATCH_UP
            ):
                made += await services.enqueue_for_run(run_id, tenant, pipeline, self.public_url)
        except Exception:
            log.exception("catching up on notifications failed")
            return
        if made:
            log.info("notifications: %d delivery(ies) of runs that finished while not followed", made)
            self._wake.set()

    # ------------------------------------------------------------------ rows -> requests

    async def _send_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self._send_due()
            except Exception:
                log.exception("notifications: looking for due deliveries failed")
                wait = POLL_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _send_due(self) -> float:
        """Start the due attempts there is room for; how long to sleep unless woken."""
        free = self.policy.concurrency - len(self._inflight)
        now = datetime.now(UTC)
        if free > 0:
            for due in await services.due_deliveries(now, free, self.box):
                if due.id in self._inflight:
                    continue
                hold = now + timedelta(seconds=self.policy.timeout_s + 30)
                if await services.claim(due, now, hold):
                    task = asyncio.create_task(self._attempt(due), name=f"notify-{due.id}")
                    self._inflight[due.id] = task
                    task.add_done_callback(functools.partial(self._done, due.id))
        if len(self._inflight) >= self.policy.concurrency:
            return POLL_S  # an attempt ending wakes the loop
        upcoming = await services.next_due_at()
        if upcoming is None:
            return POLL_S
        return min(max((upcoming - datetime.now(UTC)).total_seconds(), 0.01), POLL_S)

    def _done(self, delivery_id: UUID, _: asyncio.Task[None]) -> None:
        self._inflight.pop(delivery_id, None)
        self._wake.set()

    async def _attempt(self, due: Due) -> None:
        attempt = due.attempts + 1
        status_code: int | None = None
        try:
            status_code, error = await self._post(due)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("notification delivery %s failed unexpectedly", due.id)
            error = f"internal error ({exc.__class__.__name__}); see the controller's log"
        now = datetime.now(UTC)
        retry = bool(error) and attempt < self.policy.max_attempts
        later = now + timedelta(seconds=self.policy.delay_s(attempt)) if retry else None
        await services.record_attempt(due.id, status_code, error, later, now)
        if error:
            what = f"retrying in {self.policy.delay_s(attempt):g}s" if retry else "giving up"
            log.warning(
                "notification %s: %s of pipeline %s run %s, attempt %d of %d failed (%s); %s",
                due.notification_name,
                due.event,
                due.pipeline_name,
                due.run_number,
                attempt,
                self.policy.max_attempts,
                error,
                what,
            )

    async def _post(self, due: Due) -> tuple[int | None, str]:
        """One POST: (HTTP status or None, "" when delivered else what went wrong)."""
        if not due.url or not due.secret:
            return None, "the notification's URL or secret does not decrypt with the master key"
        assert self._client is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            signing.TIMESTAMP_HEADER: str(timestamp),
            signing.SIGNATURE_HEADER: signing.signature(due.secret, timestamp, due.body),
            signing.EVENT_HEADER: due.event,
            signing.DELIVERY_HEADER: str(due.id),
        }
        try:
            async with self._client.stream("POST", due.url, content=due.body, headers=headers) as response:
                if 200 <= response.status_code < 300:
                    return response.status_code, ""
                snippet = b""
                async for chunk in response.aiter_raw():
                    snippet += chunk
                    if len(snippet) >= SNIPPET_BYTES:
                        break
        except httpx.TimeoutException:
            return None, f"no answer within {self.policy.timeout_s:g}s"
        except httpx.HTTPError as exc:
            reason = str(exc).replace(due.url, "<url>") or exc.__class__.__name__
            return None, f"could not connect: {reason}"
        return response.status_code, _refusal(response.status_code, snippet)


def _refusal(status: int, snippet: bytes) -> str:
    """An answer that is not 2xx, in the delivery log's words."""
    if 300 <= status < 400:
        return f"HTTP {status}: a redirect (not followed): configure the URL it points to"
    text = " ".join(snippet[:SNIPPET_BYTES].decode("utf-8", "replace").split())
    text = "".join(c for c in text if c.isprintable())
    return f"HTTP {status}" + (f": {text}" if text else "")
