"""Notification and NotificationDelivery: where to tell about finished runs, and each telling.

- `Notification`: one webhook of a tenant, for one pipeline or (pipeline null) every pipeline of
  the tenant: the URL, the payload `format` (`json`, `slack`), the `events` it wants (a JSON list
  of `finished`, `failed`, `fixed`) and the signing secret. The URL and the secret are sealed
  under the master key (controller.secrets.atrest): a Slack webhook URL is itself a credential.
  `url_hint` (scheme and host) is what listings show.
- `NotificationDelivery`: one event of one run to one notification, written before anything is
  sent, so a controller restart loses no delivery and repeats none that succeeded. `body` is the
  payload as sent (built once; every attempt sends the same bytes, signed anew). `dedupe_key`
  (the run and when it finished) is unique per notification: the run event seen twice, or by two
  replicas, makes one delivery; a run that finishes again after a retry makes another.
"""

from __future__ import annotations

from piccolo.columns import JSON, UUID, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run


class Notification(Table):
    """A webhook of a tenant (see the module docstring). Deleting its pipeline deletes it."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    pipeline = ForeignKey(references=Pipeline, null=True, default=None, on_delete=OnDelete.cascade)
    name = Varchar(length=200)
    url = Text()  # sealed under the master key
    url_hint = Varchar(length=300)
    format = Varchar(length=16, default="json")
    events = JSON(default=[])
    secret = Text()  # sealed under the master key
    created_by = Varchar(length=200, default="")
    created_at = Timestamptz()


class NotificationDelivery(Table):
    """One event of one run for one notification, and how sending it went.

    `status`: `pending` (to send at `next_attempt_at`), `delivered` (a 2xx answer) or `failed`
    (every attempt failed). `attempts` counts attempts started; the last one's HTTP status (null
    when none came back) and error are kept.
    """

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    notification = ForeignKey(references=Notification, null=False, on_delete=OnDelete.cascade)
    run = ForeignKey(references=Run, null=False, on_delete=OnDelete.cascade)
    event = Varchar(length=16)
    dedupe_key = Varchar(length=128)
    body = Text()
    status = Varchar(length=16, default="pending", index=True)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(null=True, default=None, index=True)
    last_attempt_at = Timestamptz(null=True, default=None)
    last_status_code = Integer(null=True, default=None)
    last_error = Text(default="")
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True, default=None)

    # Unique (notification, dedupe_key): index notification_delivery_dedupe_unique (hand-written
    # migration, as every composite unique index here: SQLite cannot ALTER TABLE ... ADD CONSTRAINT).
