"""PiccoloStore's hand-built statements against the tables they write (real SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from agent.contract.types import StageSpec, StageStatus
from controller.db.columns import Statement
from controller.orgs.services import ensure_default_org_and_tenant
from controller.pipelines.services import create_pipeline
from controller.runs.tables import Run, StageRun
from controller.scheduling import db_store
from controller.scheduling.db_store import PiccoloStore
from controller.scheduling.model import RunState, StageState
from controller.scheduling.ports import NewRun


def _columns(statement: Statement) -> set[str]:
    match = re.search(r"\(([^)]*)\) VALUES", statement.sql)
    assert match is not None, statement.sql
    return {name.strip().strip('"') for name in match.group(1).split(",")}


def test_the_inserts_name_every_column_so_none_is_left_to_a_default() -> None:
    """A column added to a table must be added to the hand-built INSERT too (this fails until it is)."""
    assert _columns(db_store._INSERT_RUN) == {c._meta.db_column_name for c in Run._meta.columns}
    assert _columns(db_store._INSERT_STAGE) == {c._meta.db_column_name for c in StageRun._meta.columns}


async def test_a_run_written_by_the_store_reads_back_through_piccolo(db: Any) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    pipeline = await create_pipeline(org, tenant, 'pipeline "p"\nstage "s" { run "true"; }\n', None)
    s = PiccoloStore(org, tenant)
    number = await s.next_run_number(pipeline["id"])
    assert number == 1 and await s.next_run_number(pipeline["id"]) == 2
    run_id = uuid.uuid4()
    started = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
    spec = StageSpec(name="s", index=0, commands=("echo 'a \"b\"'",), labels={"os": "linux"})
    stage = StageState(
        id=uuid.uuid4(),
        run_id=run_id,
        name="s",
        index=0,
        status=StageStatus.QUEUED,
        spec=spec,
        needs=("x",),
        executor="local",
        labels={"os": "linux"},
        queued_at=started,
        queue_timeout_s=90.0,
    )
    run = RunState(
        id=run_id, pipeline_id=pipeline["id"], number=number, status=StageStatus.QUEUED, created_at=started
    )
    run.stages["s"] = stage
    env = {"TARGET": "staging", "QUOTED": 'it\'s "x" ü'}
    await s.insert_run(NewRun(run, pipeline["id"], "main", "abc", "msg; $(x)", "me", "api", env=env))
    origin = await s.run_origin(run_id)
    assert origin is not None and dict(origin.env) == env  # a re-run passes them again

    row = await Run.select().where(Run.id == run_id).first()
    assert row is not None
    assert (row["number"], row["status"], row["commit_message"], row["cancel_requested"]) == (
        number,
        "queued",
        "msg; $(x)",
        False,
    )
    assert row["created_at"].astimezone(UTC) == started and row["started_at"] is None

    stage.waiting_reason = "all 3 matching agents are busy"
    await s.save_stage(stage)
    run.waiting_reason = "stage 's' waits: all 3 matching agents are busy"
    await s.save_run(run)
    [waiting] = await s.load_active_runs()
    assert waiting.waiting_reason == run.waiting_reason
    assert (waiting.stages["s"].waiting_reason, waiting.stages["s"].queue_timeout_s) == (
        stage.waiting_reason,
        90.0,
    )

    stage.status, stage.attempt, stage.log_seq, stage.started_at = StageStatus.RUNNING, 2, 7, started
    stage.waiting_reason = ""
    await s.save_stage(stage)
    run.status, run.started_at, run.waiting_reason = StageStatus.RUNNING, started, ""
    await s.save_run(run)
    [loaded] = await s.load_active_runs()
    got = loaded.stages["s"]
    assert (got.status, got.attempt, got.log_seq, got.needs, got.labels) == (
        StageStatus.RUNNING,
        2,
        7,
        ("x",),
        {"os": "linux"},
    )
    assert got.spec.commands == spec.commands and got.started_at == started
    assert (got.waiting_reason, got.queue_timeout_s, loaded.waiting_reason) == ("", 90.0, "")
    assert loaded.started_at == started
