"""Notifications and their deliveries in the database: the rules for a notification's settings,
storing one (URL and secret sealed), the deliveries a finished run makes, and their bookkeeping.

Every door (REST, and the CLI through it) goes through `controller.notify.commands`, which
calls these; the delivery worker (`controller.notify.delivery`) calls the delivery functions.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from controller.db.columns import loaded
from controller.errors import Invalid
from controller.notify import payloads
from controller.notify.payloads import Outcome, StageOutcome
from controller.notify.tables import Notification, NotificationDelivery
from controller.runs.tables import Run, StageRun
from controller.secrets.atrest import open_field, seal_field
from controller.secrets.crypto import SecretBox, Undecryptable

log = logging.getLogger(__name__)

MAX_URL = 2000
MAX_NAME = 200
SECRET_LENGTHS = (16, 128)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
#: Stages a notification lists (the first ones that did not succeed).
MAX_FAILED_STAGES = 20
#: Run statuses that end a run.
FINISHED = frozenset({"succeeded", "failed", "error", "cancelled", "skipped", "timed_out"})


@dataclass(frozen=True)
class NotificationRow:
    """A notification with its URL and secret opened (never in a repr)."""

    id: UUID
    org: UUID
    tenant: UUID
    pipeline_id: UUID | None
    pipeline_name: str | None
    name: str
    url: str = field(repr=False)
    url_hint: str
    format: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    created_by: str
    created_at: datetime

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        """The API view: the URL as its hint and no secret, unless `reveal` (the creation's answer)."""
        body: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "pipeline": (
                {"id": str(self.pipeline_id), "name": self.pipeline_name} if self.pipeline_id else None
            ),
            "scope": "pipeline" if self.pipeline_id else "tenant",
            "url": self.url if reveal else self.url_hint,
            "format": self.format,
            "events": list(self.events),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }
        if reveal:
            body["secret"] = self.secret
        return body


# ---------------------------------------------------------------------------------------- settings


def check_url(url: object) -> str:
    """An http(s) URL a notification may be posted to, or Invalid saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise Invalid("'url' must be the http:// or https:// URL to post notifications to")
    text = url.strip()
    if len(text) > MAX_URL or _CONTROL.search(text):
        raise Invalid(f"'url' must be one URL of at most {MAX_URL} characters, without spaces")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise Invalid("'url' is not a valid URL (check the host and the port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid(
            f"'url' must start with https:// (or http://), not {parts.scheme or 'nothing'}:// "
            "notifications are HTTP POSTs"
        )
    if not host:
        raise Invalid("'url' has no host: write it as https://HOST/PATH")
    if parts.username is not None or parts.password is not None:
        raise Invalid("'url' must not hold credentials (user:password@): the signature authenticates BuildIt")
    return text


def url_hint(url: str) -> str:
    """What listings show of a URL: scheme and host (the path may be a credential, as Slack's is)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    hidden = "/…" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}{port}{hidden}"


def check_events(events: object) -> tuple[str, ...]:
    """The events a notification wants (all of them when none are named), or Invalid."""
    if events is None:
        return payloads.EVENTS
    if not isinstance(events, list | tuple) or not all(isinstance(e, str) for e in events):
        raise Invalid(f"'events' must be a list of: {', '.join(payloads.EVENTS)}")
    unknown = sorted({e for e in events if e not in payloads.EVENTS})
    if unknown:
        raise Invalid(f"unknown event(s) {', '.join(unknown)}: choose from {', '.join(payloads.EVENTS)}")
    if not events:
        raise Invalid(f"'events' is empty: name at least one of {', '.join(payloads.EVENTS)}")
    return tuple(e for e in payloads.EVENTS if e in events)


def check_format(format: object) -> str:
    """`json` or `slack`, or Invalid."""
    if format not in payloads.FORMATS:
        raise Invalid(f"'format' must be one of {', '.join(payloads.FORMATS)}")
    return str(format)


def check_name(name: object, url: str) -> str:
    """The notification's name (default: the URL's host), or Invalid."""
    if name is None:
        return (urlsplit(url).hostname or "webhook")[:MAX_NAME]
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or "\0" in name:
        raise Invalid(f"'name' must be a non-empty string of at most {MAX_NAME} characters")
    return name.strip()


def check_secret(secret: object) -> str | None:
    """A signing secret chosen by the caller (None: one is generated), or Invalid (never quoting it)."""
    if secret is None:
        return None
    low, high = SECRET_LENGTHS
    if not isinstance(secret, str) or not low <= len(secret) <= high or _CONTROL.search(secret):
        raise Invalid(
            f"'secret' must be {low}-{high} printable characters without spaces "
            "(or leave it out to get a generated one)"
        )
    return secret


# ---------------------------------------------------------------------------------- notifications


def _opened(box: SecretBox, record: dict[str, Any], column: str) -> str:
    """A sealed column's plaintext; "" (logged, never the value) when it does not open."""
    try:
        return open_field(box, "notification", record["id"], column, record[column])
    except Undecryptable:
        log.error("the %s of notification %s does not decrypt with the master key", column, record["id"])
        return ""


def _row(record: dict[str, Any], box: SecretBox) -> NotificationRow:
    return NotificationRow(
        id=record["id"],
        org=record["org"],
        tenant=record["tenant"],
        pipeline_id=record["pipeline"],
        pipeline_name=record.get("pipeline_name"),
        name=record["name"],
        url=_opened(box, record, "url"),
        url_hint=record["url_hint"],
        format=record["format"],
        events=tuple(loaded(record["events"])),
        secret=_opened(box, record, "secret"),
        created_by=record["created_by"],
        created_at=record["created_at"],
    )


#: Bumped whenever this process creates or deletes a notification (`notifications_version`).
_version = 0


def notifications_version() -> int:
    """A counter of this process's notification changes: a cache of who has notifications that
    was loaded at another value is stale (see `DeliveryWorker`)."""
    return _version


def _changed() -> None:
    global _version
    _version += 1


async def tenants_with_notifications() -> frozenset[UUID]:
    """The tenants that have at least one notification (most have none)."""
    rows = await Notification.select(Notification.tenant).distinct()
    return frozenset(row["tenant"] for row in rows)


def _select() -> Any:
    return Notification.select(
        *Notification.all_columns(), Notification.pipeline.name.as_alias("pipeline_name")
    )


async def create_notification(
    box: SecretBox,
    org: UUID,
    tenant: UUID,
    pipeline_id: UUID | None,
    name: str,
    url: str,
    format: str,
    events: Sequence[str],
    secret: str,
    created_by: str,
) -> NotificationRow:
    """Store a checked notification (URL and secret sealed, bound to the new row)."""
    notification_id = uuid.uuid4()
    await Notification.insert(
        Notification(
            id=notification_id,
            org=org,
            tenant=tenant,
            pipeline=pipeline_id,
            name=name,
            url=seal_field(box, "notification", notification_id, "url", url),
            url_hint=url_hint(url),
            format=format,
            events=list(events),
            secret=seal_field(box, "notification", notification_id, "secret", secret),
            created_by=created_by[:200],
            created_at=datetime.now(UTC),
        )
    )
    _changed()
    found = await get_notification(tenant, notification_id, box)
    assert found is not None
    return found


async def get_notification(tenant: UUID, notification_id: UUID, box: SecretBox) -> NotificationRow | None:
    """A notification of `tenant`, or None."""
    record = (
        await _select().where((Notification.tenant == tenant) & (Notification.id == notification_id)).first()
    )
    return _row(record, box) if record is not None else None


async def list_notifications(tenant: UUID, box: SecretBox) -> list[NotificationRow]:
    """Every notification of `tenant`, oldest first."""
    records = await _select().where(Notification.tenant == tenant).order_by(Notification.created_at)
    return [_row(r, box) for r in records]


async def delete_notification(tenant: UUID, notification_id: UUID) -> bool:
    """Delete a notification of `tenant` and its delivery log; False when there is none."""
    deleted = (
        await Notification.delete()
        .where((Notification.tenant == tenant) & (Notification.id == notification_id))
        .returning(Notification.id)
    )
    _changed()
    return bool(deleted)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def list_deliveries(notification_id: UUID, limit: int) -> list[dict[str, Any]]:
    """The delivery log of a notification, newest first, as the API shows it (no body)."""
    rows = (
        await NotificationDelivery.select(
            NotificationDelivery.id,
            NotificationDelivery.event,
            NotificationDelivery.status,
            NotificationDelivery.attempts,
            NotificationDelivery.last_status_code,
            NotificationDelivery.last_error,
            NotificationDelivery.next_attempt_at,
            NotificationDelivery.last_attempt_at,
            NotificationDelivery.created_at,
            NotificationDelivery.delivered_at,
            NotificationDelivery.run.id.as_alias("run_id"),
            NotificationDelivery.run.number.as_alias("run_number"),
            NotificationDelivery.run.pipeline.as_alias("pipeline_id"),
        )
        .where(NotificationDelivery.notification == notification_id)
        .order_by(NotificationDelivery.created_at, ascending=False)
        .limit(limit)
    )
    return [
        {
            "id": str(row["id"]),
            "event": row["event"],
            "status": row["status"],
            "attempts": row["attempts"],
            "last_status_code": row["last_status_code"],
            "last_error": row["last_error"],
            "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
            "last_attempt_at": _iso(row["last_attempt_at"]),
            "created_at": _iso(row["created_at"]),
            "delivered_at": _iso(row["delivered_at"]),
            "run": {
                "id": str(row["run_id"]),
                "number": row["run_number"],
                "pipeline_id": str(row["pipeline_id"]),
            },
        }
        for row in rows
    ]


# ------------------------------------------------------------------------------------ deliveries


async def _previous_status(row: dict[str, Any]) -> str | None:
    """The status of the run before `row` on the same pipeline and branch that says whether the
    pipeline worked (succeeded, failed, error; cancelled runs say neither)."""
    previous = (
        await Run.select(Run.status)
        .where(
            (Run.pipeline == row["pipeline"])
            & (Run.branch == row["branch"])
            & (Run.number < row["number"])
            & Run.status.is_in(sorted(payloads.VERDICTS))
        )
        .order_by(Run.number, ascending=False)
        .first()
    )
    return str(previous["status"]) if previous is not None else None


async def _outcome(row: dict[str, Any], pipeline_name: str, public_url: str) -> Outcome:
    stages = (
        await StageRun.select(StageRun.name, StageRun.status, StageRun.exit_code, StageRun.message)
        .where((StageRun.run == row["id"]) & StageRun.status.is_in(["failed", "timed_out", "error"]))
        .order_by(StageRun.index)
        .limit(MAX_FAILED_STAGES)
    )
    return Outcome(
        pipeline_id=str(row["pipeline"]),
        pipeline_name=pipeline_name,
        run_id=str(row["id"]),
        number=int(row["number"]),
        status=str(row["status"]),
        branch=str(row["branch"]),
        sha=str(row["sha"]),
        message=str(row["commit_message"]),
        author=str(row["author"]),
        trigger=str(row["trigger"]),
        error=str(row["error"]),
        created_at=_iso(row["created_at"]),
        started_at=_iso(row["started_at"]),
        finished_at=_iso(row["finished_at"]),
        url=f"{public_url.rstrip('/')}/pipelines/{row['pipeline']}/runs/{row['number']}",
        previous_status=await _previous_status(row),
        failed_stages=tuple(
            StageOutcome(s["name"], s["status"], s["exit_code"], s["message"][:500]) for s in stages
        ),
    )


async def enqueue_for_run(run_id: UUID, tenant: UUID, pipeline_id: UUID, public_url: str) -> int:
    """Write the deliveries a finished run makes (one per notification that wants one of its
    events); how many were new. Idempotent: a finish already enqueued makes nothing. A run of a
    tenant without notifications costs one indexed query."""
    notifications = await Notification.select(
        Notification.id,
        Notification.org,
        Notification.tenant,
        Notification.format,
        Notification.events,
        Notification.created_at,
    ).where(
        (Notification.tenant == tenant)
        & ((Notification.pipeline == pipeline_id) | Notification.pipeline.is_null())
    )
    if not notifications:
        return 0
    row = (
        await Run.select(*Run.all_columns(), Run.pipeline.name.as_alias("pipeline_name"))
        .where(Run.id == run_id)
        .first()
    )
    if row is None or row["finished_at"] is None or row["status"] not in FINISHED:
        return 0
    # A notification tells about runs that finished after it was made, not before.
    notifications = [n for n in notifications if n["created_at"] <= row["finished_at"]]
    if not notifications:
        return 0
    outcome = await _outcome(row, str(row["pipeline_name"]), public_url)
    matching = payloads.matching_events(outcome.status, outcome.previous_status)
    now = datetime.now(UTC)
    made = 0
    for notification in notifications:
        event = payloads.choose(loaded(notification["events"]), matching)
        if event is None:
            continue
        inserted = (
            await NotificationDelivery.insert(
                NotificationDelivery(
                    id=uuid.uuid4(),
                    org=notification["org"],
                    tenant=notification["tenant"],
                    notification=notification["id"],
                    run=row["id"],
                    event=event,
                    dedupe_key=f"{row['id']}:{row['finished_at'].isoformat()}"[:128],
                    body=payloads.render(notification["format"], outcome, event).decode(),
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            .on_conflict(action="DO NOTHING")
            .returning(NotificationDelivery.id)
        )
        made += len(inserted)
    return made


async def recently_finished_runs(since: datetime) -> list[tuple[UUID, UUID, UUID]]:
    """(run, tenant, pipeline) of the runs that finished after `since` in tenants that have
    notifications: the catch-up after a start or a missed event."""
    tenants = [r["tenant"] for r in await Notification.select(Notification.tenant).distinct()]
    if not tenants:
        return []
    rows = await Run.select(Run.id, Run.tenant, Run.pipeline).where(
        (Run.finished_at >= since) & Run.tenant.is_in(tenants) & Run.status.is_in(sorted(FINISHED))
    )
    return [(row["id"], row["tenant"], row["pipeline"]) for row in rows]


@dataclass(frozen=True)
class Due:
    """A delivery to attempt now: what to send, and where (URL and secret opened)."""

    id: UUID
    notification_id: UUID
    notification_name: str
    event: str
    body: bytes
    attempts: int
    pipeline_name: str
    run_number: int
    url: str = field(repr=False)
    secret: str = field(repr=False)


async def due_deliveries(now: datetime, limit: int, box: SecretBox) -> list[Due]:
    """Pending deliveries whose time has come, oldest first, with where to send them."""
    rows = (
        await NotificationDelivery.select(
            NotificationDelivery.id,
            NotificationDelivery.notification,
            NotificationDelivery.event,
            NotificationDelivery.body,
            NotificationDelivery.attempts,
            NotificationDelivery.notification.name.as_alias("notification_name"),
            NotificationDelivery.notification.url.as_alias("url"),
            NotificationDelivery.notification.secret.as_alias("secret"),
            NotificationDelivery.run.number.as_alias("run_number"),
            NotificationDelivery.run._.pipeline._.name.as_alias("pipeline_name"),
        )
        .where((NotificationDelivery.status == "pending") & (NotificationDelivery.next_attempt_at <= now))
        .order_by(NotificationDelivery.next_attempt_at)
        .limit(limit)
    )
    due: list[Due] = []
    for row in rows:
        sealed = {"id": row["notification"], "url": row["url"], "secret": row["secret"]}
        due.append(
            Due(
                id=row["id"],
                notification_id=row["notification"],
                notification_name=row["notification_name"],
                event=row["event"],
                body=str(row["body"]).encode(),
                attempts=row["attempts"],
                pipeline_name=row["pipeline_name"],
                run_number=row["run_number"],
                url=_opened(box, sealed, "url"),
                secret=_opened(box, sealed, "secret"),
            )
        )
    return due


async def next_due_at() -> datetime | None:
    """When the next pending delivery is due (None: nothing is pending)."""
    row = (
        await NotificationDelivery.select(NotificationDelivery.next_attempt_at)
        .where(NotificationDelivery.status == "pending")
        .order_by(NotificationDelivery.next_attempt_at)
        .first()
    )
    return row["next_attempt_at"] if row is not None else None


async def claim(delivery: Due, now: datetime, until: datetime) -> bool:
    """Start an attempt: count it, and hold the delivery until `until` (so another replica, or
    this one after a crash, tries it again only then). False when someone else claimed it."""
    claimed = (
        await NotificationDelivery.update(
            {
                NotificationDelivery.attempts: delivery.attempts + 1,
                NotificationDelivery.next_attempt_at: until,
                NotificationDelivery.last_attempt_at: now,
            }
        )
        .where(
            (NotificationDelivery.id == delivery.id)
            & (NotificationDelivery.status == "pending")
            & (NotificationDelivery.attempts == delivery.attempts)
        )
        .returning(NotificationDelivery.id)
    )
    return bool(claimed)


async def record_attempt(
    delivery_id: UUID, status_code: int | None, error: str, next_attempt_at: datetime | None, now: datetime
) -> None:
    """How an attempt ended: delivered (no `error`), to retry at `next_attempt_at`, or failed for
    good (an error and no next attempt)."""
    values: dict[Any, Any] = {
        NotificationDelivery.last_status_code: status_code,
        NotificationDelivery.last_error: error[:1000],
    }
    if not error:
        values |= {NotificationDelivery.status: "delivered", NotificationDelivery.delivered_at: now}
        values[NotificationDelivery.next_attempt_at] = None
    elif next_attempt_at is None:
        values |= {NotificationDelivery.status: "failed", NotificationDelivery.next_attempt_at: None}
    else:
        values[NotificationDelivery.next_attempt_at] = next_attempt_at
    await NotificationDelivery.update(values).where(NotificationDelivery.id == delivery_id)
