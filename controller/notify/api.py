"""REST: /api/v1/notifications — outgoing webhooks of the caller's tenant, and their delivery logs.

`POST /api/v1/notifications` with `{"url": "https://...", "pipeline"?: "name or id", "events"?:
["finished", "failed", "fixed"], "format"?: "json"|"slack", "name"?: "...", "secret"?: "..."}`
answers 201 with the URL and the signing secret, this once; `GET` lists them (the URL as scheme
and host only), `GET /{id}` shows one, `DELETE /{id}` removes it (204), and
`GET /{id}/deliveries?limit=50` is its delivery log. All of it needs the `manage` permission
(maintainer): a webhook URL can be a credential, and adding one makes the controller reach a host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Unavailable
from controller.notify import commands
from controller.notify.commands import NewNotification
from controller.secrets.crypto import SecretBox


@dataclass
class AddNotification:
    """Body of POST /api/v1/notifications (see the module docstring)."""

    url: str
    pipeline: str | None = None
    events: list[str] | None = None
    format: str = "json"
    name: str | None = None
    #: Your own signing secret (16-128 characters); default: a generated one.
    secret: str | None = field(default=None, repr=False)


def _box(deps: Deps) -> SecretBox:
    if deps.secret_box is None:
        raise Unavailable("notifications are not available: this controller was started without a master key")
    return deps.secret_box


class NotificationsController(Controller):
    """Notifications of the caller's tenant (another tenant's id answers 404)."""

    path = "/api/v1/notifications"
    tags = ["notifications"]
    opt = requires(Permission.MANAGE)

    @get("/")
    async def list_notifications(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller]
    ) -> dict[str, Any]:
        """Every notification of the tenant; URLs as scheme and host, no secrets."""
        return {"notifications": [n.to_json() for n in await commands.listing(_box(deps), caller)]}

    @post("/", status_code=201)
    async def add(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], data: JSONBody[AddNotification]
    ) -> dict[str, Any]:
        """Add a notification; the answer holds its URL and signing secret, this once.

        Tenant maintainers post to https:// URLs on BUILDIT_REPO_HOSTS or, with that list empty,
        on hosts that are not internal; other URLs need an organization owner or admin.
        """
        request = NewNotification(
            url=data.url,
            pipeline=data.pipeline,
            events=data.events,
            format=data.format,
            name=data.name,
            secret=data.secret,
        )
        created = await commands.add(_box(deps), caller, request, deps.repo_hosts)
        return created.to_json(reveal=True)

    @get("/{notification_id:uuid}")
    async def show(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], notification_id: FromPath[UUID]
    ) -> dict[str, Any]:
        """One notification (URL as scheme and host, no secret)."""
        return (await commands.get(_box(deps), caller, notification_id)).to_json()

    @delete("/{notification_id:uuid}", status_code=204)
    async def remove(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], notification_id: FromPath[UUID]
    ) -> None:
        """Remove a notification and its delivery log; deliveries still pending are not sent."""
        await commands.remove(_box(deps), caller, notification_id)

    @get("/{notification_id:uuid}/deliveries")
    async def deliveries(
        self,
        deps: NamedDependency[Deps],
        caller: NamedDependency[Caller],
        notification_id: FromPath[UUID],
        limit: FromQuery[int] = 50,
    ) -> dict[str, Any]:
        """The delivery log, newest first: event, run, status (pending, delivered, failed), attempts,
        the last HTTP status and error, when the next attempt is due."""
        return {"deliveries": await commands.deliveries(_box(deps), caller, notification_id, limit)}
