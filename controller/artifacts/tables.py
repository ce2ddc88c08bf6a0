"""The Artifact table: one file a stage produced, stored by content under the data dir.

The bytes live once per content (`<data dir>/artifacts/<sha256[:2]>/<sha256>`); each row says
which stage of which run produced which path with that content. A stage's artifacts are restored,
by path, into the workspace of every stage that `needs` it.
"""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, ForeignKey, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant
from controller.runs.tables import Run, StageRun


class Artifact(Table):
    """One artifact file: `path` is relative to the workspace, '/'-separated."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    run = ForeignKey(references=Run, null=False, on_delete=OnDelete.cascade)
    stage_run = ForeignKey(references=StageRun, null=False, on_delete=OnDelete.cascade)
    stage = Varchar(length=63)
    path = Text()
    sha256 = Varchar(length=64, index=True)
    size = BigInt()
    created_at = Timestamptz()

    # Unique (stage_run, path): index artifact_stage_run_path_unique (hand-written migration): a
    # retried attempt replaces its artifacts instead of adding a second copy.
