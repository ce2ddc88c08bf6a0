"""Run and StageRun: one execution of a pipeline, and one stage of it (with its durable lease).

StageRun is the unit the scheduler leases to agents, so it carries the lease (`lease_id` fencing
token, `lease_deadline`, `agent`), the retry counters, the per-stage timeout deadline and the log
index (`log_seq`, `log_size`: the last acknowledged chunk and the bytes stored), which is what
makes a controller restart lose or duplicate nothing.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from controller.agents.tables import Agent
from controller.orgs.tables import Organization, Tenant
from controller.pipelines.tables import Pipeline


class Run(Table):
    """One run of a pipeline at a commit. `number` counts up per pipeline (see Pipeline)."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    pipeline = ForeignKey(references=Pipeline, null=False, on_delete=OnDelete.cascade)
    number = Integer()
    status = Varchar(length=16, default="pending")
    branch = Varchar(length=255)
    sha = Varchar(length=64)
    commit_message = Text()
    author = Varchar(length=255)
    trigger = Varchar(length=16)
    error = Text(default="")
    cancel_requested = Boolean(default=False)
    created_at = Timestamptz()
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    # What the run was planned from, so a re-run builds the same thing: the pipeline file (a
    # repository's `.buildit.kdl` at the commit; "" for runs made before it was stored) and the
    # workspace every stage fetches (JSON `{"repo_url", "commit_sha", "ref"}`, `{}` for none).
    pipeline_source = Text(default="")
    workspace = JSON(default={})
    # Variables the trigger passed (`${env.NAME}`; JSON object name -> value, `{}` for none), given
    # again to a re-run. Stored as passed; never logged.
    env = JSON(default={})
    # Why it waits: its waiting stages' reason ("stage 'x' waits: no connected agent has ..."),
    # "" when no stage waits (see controller.scheduling.waiting).
    waiting_reason = Text(default="")

    # Unique (pipeline, number): index run_pipeline_number_unique, made by a hand-written migration (Piccolo's
    # Unique() constraint is an ALTER TABLE ... ADD CONSTRAINT, which SQLite does not have).


class StageRun(Table):
    """One stage of a run.

    `needs` is a JSON list of stage names, `spec` the compiled stage spec as a JSON object, `labels`
    the JSON object an agent's labels must include. `agent` is set null (not cascaded) when an agent
    is deleted: the history of what ran stays.
    """

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    run = ForeignKey(references=Run, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=63)
    index = Integer()
    status = Varchar(length=16, default="pending", index=True)
    needs = JSON(default=[])
    spec = JSON(default={})
    labels = JSON(default={})
    executor = Varchar(length=16)
    attempt = Integer(default=1)
    infra_failures = Integer(default=0)
    user_retries_used = Integer(default=0)
    agent = ForeignKey(references=Agent, null=True, on_delete=OnDelete.set_null, index=True)
    lease_id = Varchar(length=64, null=True, default=None, index=True)
    lease_deadline = Timestamptz(null=True, default=None)
    timeout_deadline = Timestamptz(null=True, default=None)
    exit_code = Integer(null=True, default=None)
    message = Text(default="")
    queued_at = Timestamptz(null=True, default=None)
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    log_seq = BigInt(default=0)
    log_size = BigInt(default=0)
    # Why no agent takes it while it is queued ("" otherwise; see controller.scheduling.waiting).
    waiting_reason = Text(default="")

    # Unique (run, name): index stage_run_run_name_unique, made by a hand-written migration (Piccolo's
    # Unique() constraint is an ALTER TABLE ... ADD CONSTRAINT, which SQLite does not have).
