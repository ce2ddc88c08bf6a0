"""Pipeline and PipelineVersion: a named pipeline configuration (the `.buildit.kdl` source) in a
tenant, and every file it has had."""

from __future__ import annotations

from datetime import UTC, datetime

from piccolo.columns import UUID, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant
from controller.repos.tables import Repository


def _utc_now() -> datetime:
    """`updated_at` must be tz-aware like every BuildIt timestamp (`datetime.now` is naive)."""
    return datetime.now(UTC)


class Pipeline(Table):
    """One pipeline: registered with its source, or the pipeline of a watched repository.

    `next_run_number` is the counter runs take their `number` from.

    The counter lives on the row (not `MAX(number) + 1`) so that taking a number is one atomic
    `UPDATE ... SET next_run_number = next_run_number + 1 RETURNING`, on SQLite and PostgreSQL.
    """

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=200)
    config = Text()
    next_run_number = Integer(default=0)
    created_at = Timestamptz()
    updated_at = Timestamptz(auto_update=_utc_now)
    #: Set for the pipeline of a watched repository: its runs read `.buildit.kdl` at their commit,
    #: and `config` holds the newest valid source seen (for display).
    repository = ForeignKey(references=Repository, null=True, default=None, on_delete=OnDelete.cascade)
    #: Counts the files the pipeline has had: 1 when created, + 1 for each change (PipelineVersion).
    version = Integer(default=1)
    #: A watched repository's pipeline: the commit `config` was read from ("" otherwise).
    config_sha = Varchar(length=64, default="")

    # Unique (tenant, name): index pipeline_tenant_name_unique, made by a hand-written migration (Piccolo's
    # Unique() constraint is an ALTER TABLE ... ADD CONSTRAINT, which SQLite does not have).


class PipelineVersion(Table):
    """One file a pipeline has had: version `version` of it, who made it when (for a watched
    repository's pipeline, `sha` is the commit it was read from and `created_by` is empty).

    Why a table: an edit replaces `Pipeline.config`, and each run keeps the file it ran
    (`Run.pipeline_source`), but "what did the pipeline look like before, and who changed it" is
    a question about the pipeline. Pipelines made before versions existed get their row for their
    current file when it is first replaced.
    """

    id = UUID(primary_key=True)
    pipeline = ForeignKey(references=Pipeline, null=False, on_delete=OnDelete.cascade, index=True)
    version = Integer()
    config = Text()
    sha = Varchar(length=64, default="")
    created_by = Varchar(length=200, default="")
    created_at = Timestamptz()

    # Unique (pipeline, version): index pipeline_version_pipeline_version_unique (hand-written migration).
