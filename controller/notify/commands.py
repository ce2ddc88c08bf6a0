"""The notification operations every door adapts: add, list, show, remove, and the delivery log.

Adding one makes the controller post to a URL from its own network, the probe that registering
a repository is: the same rules decide who may name which host (`check_may_reach` of
controller.repos.commands: tenant maintainers post to https:// URLs on BUILDIT_REPO_HOSTS or, with
that list empty, on hosts that are not internal; plaintext http:// and internal hosts need an
organization owner or admin). Everything is checked before anything is stored; the signing secret
(and the URL, which may itself be a credential) is sealed, and returned once, by `add`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.errors import Invalid, NotFound
from controller.git.sources import Location
from controller.notify import services
from controller.notify.services import NotificationRow
from controller.pipelines.services import find_pipeline
from controller.repos.commands import Probe, check_may_reach
from controller.secrets.crypto import SecretBox

NOTIFY = Probe("send notifications to", "sends notifications to", "an https:// URL")
MAX_DELIVERIES = 200


@dataclass(frozen=True)
class NewNotification:
    """What a caller asks for (unchecked): see `add`."""

    url: object
    pipeline: object = None
    events: object = None
    format: object = "json"
    name: object = None
    secret: object = field(default=None, repr=False)


async def add(
    box: SecretBox, caller: Caller, request: NewNotification, allowed_hosts: tuple[str, ...]
) -> NotificationRow:
    """Store a notification of the caller's tenant, for one pipeline (its name or id) or all of
    them; the answer holds the URL and the secret, this once. Invalid, NotFound or Forbidden
    (nothing stored) when the request cannot be honoured."""
    url = services.check_url(request.url)
    events = services.check_events(request.events)
    format = services.check_format(request.format)
    name = services.check_name(request.name, url)
    secret = services.check_secret(request.secret) or secrets.token_urlsafe(32)
    parts = urlsplit(url)  # check_url made sure it has a scheme and a host
    where = Location("remote", parts.scheme.lower(), parts.hostname or "")
    check_may_reach(where, caller, allowed_hosts, NOTIFY)
    pipeline_id: UUID | None = None
    if request.pipeline is not None:
        if not isinstance(request.pipeline, str) or not request.pipeline.strip():
            raise Invalid("'pipeline' must be a pipeline's name or id (or null for every pipeline)")
        row = await find_pipeline(caller.tenant, request.pipeline.strip())
        if row is None:
            raise NotFound(f"pipeline {request.pipeline!r} not found; list them with GET /api/v1/pipelines")
        pipeline_id = UUID(str(row["id"]))
    created = await services.create_notification(
        box, caller.org, caller.tenant, pipeline_id, name, url, format, events, secret, caller.name
    )
    await audit.record(
        "notification.create", f"{created.name} ({created.id}) -> {created.url_hint}", caller=caller
    )
    return created


async def listing(box: SecretBox, caller: Caller) -> list[NotificationRow]:
    """The caller's tenant's notifications."""
    return await services.list_notifications(caller.tenant, box)


async def get(box: SecretBox, caller: Caller, notification_id: UUID) -> NotificationRow:
    """One notification of the caller's tenant; NotFound otherwise (another tenant's too)."""
    found = await services.get_notification(caller.tenant, notification_id, box)
    if found is None:
        raise NotFound(f"notification {notification_id} not found; list them with GET /api/v1/notifications")
    return found


async def remove(box: SecretBox, caller: Caller, notification_id: UUID) -> None:
    """Delete a notification and its delivery log (pending deliveries are not sent); NotFound
    when the tenant has none with that id (nothing changed, nothing audited)."""
    found = await get(box, caller, notification_id)
    if not await services.delete_notification(caller.tenant, notification_id):
        raise NotFound(f"notification {notification_id} not found; list them with GET /api/v1/notifications")
    await audit.record("notification.delete", f"{found.name} ({found.id})", caller=caller)


async def deliveries(
    box: SecretBox, caller: Caller, notification_id: UUID, limit: int
) -> list[dict[str, Any]]:
    """The delivery log of a notification of the caller's tenant, newest first: event, run,
    status, attempts, the last HTTP status and error."""
    if not 1 <= limit <= MAX_DELIVERIES:
        raise Invalid(f"'limit' must be between 1 and {MAX_DELIVERIES}")
    await get(box, caller, notification_id)
    return await services.list_deliveries(notification_id, limit)
