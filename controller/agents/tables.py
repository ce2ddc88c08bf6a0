"""The Agent table: one registered agent of the fleet."""

from __future__ import annotations

from piccolo.columns import JSON, UUID, Boolean, ForeignKey, Integer, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant


class Agent(Table):
    """A registered agent.

    Only a hash of the agent's long-lived token is stored (`token_hash`, unique: it is how an
    incoming call finds its agent), so a leaked database does not leak credentials.
    `labels` is a JSON object (`{"os": "linux"}`), `executors` a JSON list (`["docker", "local"]`).
    `draining` is what the agent itself last said (it drains on SIGTERM); `operator_drain` is an
    operator's drain (REST), kept across restarts until resumed. Either one stops new leases.
    """

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=128)
    token_hash = Varchar(length=64, unique=True)
    labels = JSON(default={})
    executors = JSON(default=[])
    capacity = Integer(default=1)
    version = Varchar(length=32)
    status = Varchar(length=16, default="offline")
    draining = Boolean(default=False)
    operator_drain = Boolean(default=False)
    #: Enrolled with an org-wide registration token: takes stages of every tenant of its org
    #: (True for agents enrolled before tokens were objects: their token became org-wide).
    org_wide = Boolean(default=True)
    last_seen = Timestamptz(null=True, default=None)
    registered_at = Timestamptz()

    # Unique (tenant, name): index agent_tenant_name_unique, made by a hand-written migration (Piccolo's
    # Unique() constraint is an ALTER TABLE ... ADD CONSTRAINT, which SQLite does not have).
