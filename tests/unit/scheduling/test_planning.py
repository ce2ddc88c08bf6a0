"""The scheduler's pure rules: trigger variables, advancing a run, matching agents, deadlines."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agent.contract.types import StageSpec, StageStatus
from controller.definition.plan import GitContext
from controller.errors import Invalid
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState
from controller.scheduling.planning import (
    Due,
    RunRequest,
    advance,
    build_run,
    check_env,
    clamp_finished,
    due,
    match,
    next_deadline,
    parse,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stage(name: str, needs: tuple[str, ...] = (), labels: dict[str, str] | None = None) -> StageState:
    spec = StageSpec(name=name, index=0, commands=("true",), needs=needs)
    return StageState(
        uuid.uuid4(), uuid.uuid4(), name, 0, StageStatus.PENDING, spec, needs, "local", labels or {}
    )


def agent(name: str, capacity: int, running: int = 0, labels: dict[str, str] | None = None) -> AgentConn:
    conn = AgentConn(uuid.uuid4(), name, labels or {}, ("local",), capacity, "1")
    conn.events = asyncio.Queue()  # an open lease stream
    conn.running = {f"{name}-{i}" for i in range(running)}
    return conn


def test_check_env_accepts_the_limits_and_names_the_problem_past_them() -> None:
    assert check_env(None) == {}
    assert check_env({"_A1": "x" * 64 * 1024, "B": ""}) == {"_A1": "x" * 64 * 1024, "B": ""}
    assert len(check_env({f"V{i}": "" for i in range(100)})) == 100
    with pytest.raises(Invalid, match="'env' variable name '9X'"):
        check_env({"9X": "1"})
    with pytest.raises(Invalid) as info:
        check_env({"SECRET": "hunter2\0"})
    assert "hunter2" not in info.value.message  # values may be credentials: never shown


def test_advance_skips_the_whole_chain_below_a_failure_and_readies_the_rest() -> None:
    run = RunState(uuid.uuid4(), uuid.uuid4(), 1, StageStatus.RUNNING)
    for s in (stage("a"), stage("b", ("a",)), stage("c", ("b",)), stage("x"), stage("y", ("x",))):
        run.stages[s.name] = s
    run.stages["a"].status = StageStatus.FAILED
    run.stages["x"].status = StageStatus.SUCCEEDED
    step = advance(run)
    assert [(s.name, why) for s, why in step.skip] == [("b", "skipped: needs a"), ("c", "skipped: needs b")]
    assert [s.name for s in step.ready] == ["y"]
    assert run.stages["b"].status is StageStatus.PENDING  # a decision, not yet applied


def test_match_gives_the_oldest_stage_to_the_least_busy_agent_that_fits() -> None:
    busy, idle, gpu = agent("busy", 4, running=3), agent("idle", 2), agent("gpu", 1, labels={"gpu": "1"})
    queue = [stage("s1"), stage("needs-gpu", labels={"gpu": "1"}), stage("s2"), stage("s3"), stage("s4")]
    pairs = [(s.name, a.name) for s, a in match(queue, [busy, idle, gpu])]
    # idle has 2 free, gpu 1, busy 1; ties go to the agent running less.
    assert pairs == [("s1", "idle"), ("needs-gpu", "gpu"), ("s2", "idle"), ("s3", "busy")]
    assert match(queue, [agent("full", 1, running=1)]) == []


def test_deadlines_in_order_and_the_next_one() -> None:
    s = stage("a")
    assert due(s, T0) is None and next_deadline(s) is None
    s.lease_deadline, s.timeout_deadline = T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)
    assert next_deadline(s) == T0 + timedelta(seconds=30)
    assert due(s, T0 + timedelta(seconds=30)) is Due.LEASE
    s.cancel_deadline = T0 + timedelta(seconds=10)
    assert due(s, T0 + timedelta(seconds=90)) is Due.CANCEL


def test_clamp_finished_keeps_an_agent_time_within_started_and_now() -> None:
    now = T0 + timedelta(minutes=5)
    assert clamp_finished(None, T0, now) == now
    assert clamp_finished(T0 + timedelta(minutes=1), T0, now) == T0 + timedelta(minutes=1)
    assert clamp_finished(now + timedelta(days=1), T0, now) == now
    assert clamp_finished(T0 - timedelta(days=1), T0, now) == T0
    assert clamp_finished(T0 - timedelta(days=1), None, now) == T0 - timedelta(days=1)
    assert clamp_finished(T0, now + timedelta(days=1), now) == now  # a start "in the future"


def test_build_run_marks_when_skipped_stages_and_an_invalid_file_as_an_error_run() -> None:
    source = 'pipeline "p"\nstage "a" { run "x"; }\nstage "d" { when branch="release/*"; run "y"; }\n'
    request = RunRequest(uuid.uuid4(), 3, GitContext(branch="main"))
    run = build_run(parse(source), request, T0)
    assert run.number == 3 and run.when_skipped == {"d"}
    assert run.stages["d"].status is StageStatus.SKIPPED and run.stages["d"].finished_at == T0
    broken = build_run(parse('pipeline "p"\nstage "a" needs="zz" { run "x"; }\n'), request, T0)
    assert broken.status is StageStatus.ERROR and "zz" in broken.error and broken.finished_at == T0
