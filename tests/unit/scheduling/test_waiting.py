"""Why a queued stage waits: the words `controller.scheduling.waiting` gives for each fleet."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from agent.contract.types import StageSpec, StageStatus
from controller.scheduling import waiting
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState
from controller.scheduling.waiting import (
    duration_text,
    explain,
    explain_all,
    requirement,
    run_reason,
    timed_out_message,
)

ORG, TENANT, OTHER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def stage(
    name: str = "build", labels: dict[str, str] | None = None, image: str | None = None, **kw: Any
) -> StageState:
    spec = StageSpec(name=name, index=kw.pop("index", 0), commands=("true",), image=image)
    return StageState(
        id=uuid.uuid4(),
        run_id=kw.pop("run_id", uuid.uuid4()),
        name=name,
        index=spec.index,
        status=kw.pop("status", StageStatus.QUEUED),
        spec=spec,
        needs=(),
        executor="docker" if image else "local",
        labels=labels or {},
        org=kw.pop("org", ORG),
        tenant=kw.pop("tenant", TENANT),
        **kw,
    )


def agent(
    name: str,
    labels: dict[str, str] | None = None,
    *,
    online: bool = True,
    capacity: int = 2,
    running: int = 0,
    executors: tuple[str, ...] = ("local",),
    tenant: uuid.UUID | None = TENANT,
    **flags: bool,
) -> AgentConn:
    conn = AgentConn(uuid.uuid4(), name, labels or {}, executors, capacity, "0.1.0", org=ORG, tenant=tenant)
    conn.running = {f"lease-{i}" for i in range(running)}
    conn.events = asyncio.Queue() if online else None
    conn.agent_draining = flags.get("draining", False)
    conn.operator_draining = flags.get("operator", False)
    return conn


LINUX = {"os": "linux"}
WINDOWS = {"os": "windows"}


def test_no_agent_of_the_tenant() -> None:
    others = [agent("a", tenant=OTHER), agent("b", tenant=OTHER)]
    assert explain(stage(), others) == (
        "no agent serves this tenant: register one with a registration token of this tenant or of its "
        "organization"
    )
    assert explain(stage(), []) == (
        "no agent is registered: start one with `buildit agent` (the controller's banner shows how)"
    )


def test_no_agent_with_the_labels_names_the_connected_agents() -> None:
    fleet = [agent("b", LINUX), agent("a", LINUX), agent("gone", WINDOWS | {"x": "1"}, online=False)]
    # The offline agent lacks nothing but is not listed: only connected agents are.
    assert explain(stage(labels={"os": "windows", "arch": "arm64"}), fleet) == (
        "no connected agent has arch=arm64, os=windows; agents: a (os=linux), b (os=linux)"
    )
    assert explain(stage(labels=WINDOWS), [agent("a", LINUX, online=False)]) == (
        "no connected agent has os=windows (no agent is connected)"
    )


def test_a_long_fleet_is_cut_short() -> None:
    fleet = [agent(f"agent-{i}", LINUX) for i in range(8)]
    reason = explain(stage(labels=WINDOWS), fleet)
    assert reason.endswith("agent-4 (os=linux) and 3 more") and "agent-5" not in reason


def test_no_agent_with_the_executor() -> None:
    fleet = [agent("a", LINUX), agent("b", {})]
    assert explain(stage(image="python:3.12"), fleet) == (
        "no connected agent has the docker executor; agents: a (os=linux; local), b (no labels; local)"
    )
    # The labels on one agent, the executor on another: both are named.
    split = [agent("a", WINDOWS), agent("d", {}, executors=("local", "docker"))]
    assert explain(stage(labels=WINDOWS, image="alpine"), split) == (
        "no connected agent has os=windows and the docker executor; "
        "agents: a (os=windows; local), d (no labels; local+docker)"
    )


@pytest.mark.parametrize(
    ("fleet", "reason"),
    [
        ([agent("w", WINDOWS, draining=True)], "the only matching agent, w, is draining"),
        (
            [agent("w", WINDOWS, operator=True)],
            "the only matching agent, w, is draining (drained by an operator: resume it to give it stages)",
        ),
        ([agent("w", WINDOWS, online=False)], "the only matching agent, w, is offline"),
        ([agent("w", WINDOWS, running=2)], "the only matching agent, w, is busy (2 of 2 slots)"),
        ([agent(n, WINDOWS, running=2) for n in "xyz"], "all 3 matching agents are busy"),
        ([agent(n, WINDOWS, online=False) for n in "xy"], "all 2 matching agents are offline"),
        (
            [
                agent("x", WINDOWS, running=2),
                agent("y", WINDOWS, draining=True),
                agent("z", WINDOWS, running=2),
            ],
            "none of the 3 matching agents is free: 1 draining, 2 busy",
        ),
        ([agent("x", WINDOWS, running=2), agent("y", WINDOWS, running=1)], ""),
    ],
)
def test_matching_agents_that_cannot_take_it_now(fleet: list[AgentConn], reason: str) -> None:
    others = [agent("linux", LINUX)]  # not matching: never counted
    assert explain(stage(labels=WINDOWS), fleet + others) == reason


def test_stages_alike_are_explained_once(monkeypatch: pytest.MonkeyPatch) -> None:
    alike = [stage(f"s{i}", WINDOWS) for i in range(3)]
    different = stage("d", LINUX)
    assert requirement(alike[0]) == requirement(alike[1]) != requirement(different)
    asked: list[str] = []

    def counting(one: StageState, agents: Any) -> str:
        asked.append(one.name)
        return explain(one, agents)

    monkeypatch.setattr(waiting, "explain", counting)
    reasons = explain_all([*alike, different], [agent("l", LINUX)])
    assert asked == ["s0", "d"]
    assert [reasons[s.id] for s in alike] == ["no connected agent has os=windows; agents: l (os=linux)"] * 3
    assert reasons[different.id] == ""


def test_run_reason_names_the_stages_that_wait_and_counts_the_others() -> None:
    run = RunState(uuid.uuid4(), uuid.uuid4(), 1, StageStatus.RUNNING)
    assert run_reason(run) == ""
    why, other = "all 2 matching agents are busy", "the only matching agent, w, is draining"
    for index, (name, reason, status) in enumerate(
        [
            ("done", "", StageStatus.SUCCEEDED),
            ("b", why, StageStatus.QUEUED),
            ("a", why, StageStatus.QUEUED),
            ("young", "", StageStatus.QUEUED),
            ("w", other, StageStatus.QUEUED),
        ]
    ):
        run.stages[name] = stage(name, index=index, status=status, waiting_reason=reason, run_id=run.id)
    assert run_reason(run) == f"stages 'b', 'a' wait: {why} (1 more waits for other reasons)"
    del run.stages["a"], run.stages["w"]
    assert run_reason(run) == f"stage 'b' waits: {why}"


def test_durations_read_as_written() -> None:
    assert [duration_text(s) for s in (0.5, 1, 90, 3600, 5400, 86400 + 61)] == [
        "500ms",
        "1s",
        "1m30s",
        "1h",
        "1h30m",
        "24h1m1s",
    ]
    assert timed_out_message(3600, "all 3 matching agents are busy") == (
        "no agent took it within 1h: all 3 matching agents are busy"
    )
    assert timed_out_message(60, "") == "no agent took it within 1m"
