"""The in-memory Store keeps copies and rolls a failed transaction back, as a database would."""

from __future__ import annotations

import uuid

import pytest

from agent.contract.types import StageSpec, StageStatus
from controller.scheduling.memory_store import MemoryStore
from controller.scheduling.model import RunState, StageState
from controller.scheduling.ports import NewRun


def new_run(pipeline_id: uuid.UUID, number: int) -> NewRun:
    run = RunState(id=uuid.uuid4(), pipeline_id=pipeline_id, number=number, status=StageStatus.PENDING)
    spec = StageSpec(name="a", index=0, commands=("true",))
    run.stages["a"] = StageState(uuid.uuid4(), run.id, "a", 0, StageStatus.PENDING, spec, (), "local", {})
    return NewRun(run, pipeline_id, "main", "", "", "", "api", env={"A": "1"})


async def test_writes_are_copies_stored_only_when_written() -> None:
    store = MemoryStore()
    pipeline = store.add_pipeline('pipeline "p"\nstage "a" { run "x"; }\n')
    new = new_run(pipeline, 1)
    await store.insert_run(new)
    stage = new.run.stages["a"]
    stage.status = StageStatus.QUEUED
    assert store.stored_stage(stage.id).status is StageStatus.PENDING
    await store.save_stage(stage)
    assert store.stored_stage(stage.id).status is StageStatus.QUEUED
    assert [r.id for r in await store.load_active_runs()] == [new.run.id]
    origin = await store.run_origin(new.run.id)
    assert origin is not None and dict(origin.env) == {"A": "1"}


async def test_a_failed_transaction_leaves_nothing_behind() -> None:
    store = MemoryStore()
    pipeline = store.add_pipeline('pipeline "p"\nstage "a" { run "x"; }\n')
    with pytest.raises(RuntimeError):
        async with store.transaction():
            assert await store.next_run_number(pipeline) == 1
            await store.insert_run(new_run(pipeline, 1))
            raise RuntimeError("the operation failed")
    assert store.run_ids() == []
    async with store.transaction():
        assert await store.next_run_number(pipeline) == 1
    assert await store.next_run_number(uuid.uuid4()) is None
