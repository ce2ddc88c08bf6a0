"""AuditEvent: one state-changing action (or a failed login), kept for admins to read."""

from __future__ import annotations

from piccolo.columns import JSON, UUID, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class AuditEvent(Table):
    """Actor, time, tenant, action, target and client address of one action.

    `org`/`tenant` are plain UUIDs, not foreign keys: the record outlives what it talks about.
    The primary key is Piccolo's default serial `id`, which orders events (timestamps from several
    replicas may tie).
    """

    id = Serial(primary_key=True)
    at = Timestamptz()
    org = UUID(null=True, default=None)
    tenant = UUID(null=True, default=None)
    actor = Varchar(length=200)
    action = Varchar(length=64)
    target = Text(default="")
    address = Varchar(length=64, default="")
    outcome = Varchar(length=16, default="ok")
    detail = JSON(default={})
