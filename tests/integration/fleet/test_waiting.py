"""Stuck stages explained, end to end: a real `buildit controller` and real local-executor agents
(SQLite and PostgreSQL). A stage no agent can take says why — in REST, gRPC and on /ws, for each
case (no agent of the tenant, none with the labels, the only one busy, drained) — the words follow
the fleet as agents join, an agent with the labels takes it at once, and a queue timeout ends a
stage no agent ever took, and then its run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Agent, Controller, wait_for
from tests.integration.live.client import connect, receive_until, send

pytestmark = pytest.mark.timeout(240)

WINDOWS = 'pipeline "win"\nstage "build" { labels "os=windows"; run "echo built on windows"; }\n'
HOLD = 'pipeline "hold"\nstage "hold" { labels "os=linux"; run "sleep 60"; }\n'
NEVER = (
    'pipeline "never"\nqueue-timeout "3s"\n'
    'stage "plan9" { labels "os=plan9"; run "true"; }\nstage "after" needs="plan9" { run "true"; }\n'
)
TENANT = (
    "no agent serves this tenant: register one with a registration token of this tenant or of its "
    "organization"
)


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Controller, list[Agent]]]:
    controller = Controller(tmp_path, database_url).start()
    agents: list[Agent] = []
    try:
        yield controller, agents
    finally:
        for agent in agents:
            agent.stop()
        controller.stop()


def online(controller: Controller, name: str, tenant: str = "default/default") -> dict[str, Any]:
    def listed() -> dict[str, Any] | None:
        status, body, _ = controller.request("GET", "/api/v1/agents", headers={"X-BuildIt-Tenant": tenant})
        assert status == 200, body
        return next((a for a in body["agents"] if a["name"] == name and a["status"] == "online"), None)

    found: dict[str, Any] = wait_for(listed, 60, f"agent {name} online")
    return found


def reason_of(controller: Controller, pipeline: str, number: int, stage: str, reason: str) -> dict[str, Any]:
    """The run once its stage gives `reason` (a stage is explained after it waited a moment)."""

    def explained() -> dict[str, Any] | None:
        run = controller.run(pipeline, number)
        found = next(s for s in run["stages"] if s["name"] == stage)
        return run if found["waiting_reason"] == reason else None

    try:
        run: dict[str, Any] = wait_for(explained, 30, f"stage {stage} to say {reason!r}")
    except AssertionError:
        raise AssertionError(f"{controller.run(pipeline, number)}") from None
    return run


async def test_a_waiting_stage_says_why_as_the_fleet_changes_and_runs_when_an_agent_can_take_it(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    # Only an agent of another tenant at first: nobody serves the default tenant's stages.
    controller.request("POST", "/api/v1/tenants", {"slug": "blue"})
    status, token, _ = controller.request(
        "POST", "/api/v1/agent-tokens", {"name": "blue-pool"}, headers={"X-BuildIt-Tenant": "default/blue"}
    )
    assert status == 201, token
    agents.append(Agent(tmp_path, controller, "blue", registration_token=token["token"]))
    online(controller, "blue", "default/blue")

    win = controller.create_pipeline(WINDOWS)
    number = controller.trigger(win)
    run = reason_of(controller, win, number, "build", TENANT)
    assert (run["status"], run["waiting_reason"]) == ("queued", f"stage 'build' waits: {TENANT}")

    async with connect(controller) as page:
        await send(page, op="watch", topic="run", run_id=run["id"])
        await send(page, op="ping")  # requests are handled in order: its error means "watching"
        await receive_until(page, lambda m: m["type"] == "error")
        # A linux agent joins: the reason changes, live, and names it.
        agents.append(Agent(tmp_path, controller, "lin", labels="os=linux"))
        no_windows = "no connected agent has os=windows; agents: lin (os=linux)"
        seen = await receive_until(
            page, lambda m: m["type"] == "stage" and m["stage"]["waiting_reason"] == no_windows
        )
        assert seen[-1]["stage"]["status"] == "queued" and seen[-1]["stage"]["name"] == "build"
        runs = await receive_until(page, lambda m: m["type"] == "run")
        assert runs[-1]["run"]["waiting_reason"] == f"stage 'build' waits: {no_windows}"

    with controller.channel() as channel:
        got = pb_grpc.BuildItServiceStub(channel).GetRun(pb.GetRunRequest(run_id=run["id"])).run
    assert got.waiting_reason == f"stage 'build' waits: {no_windows}"
    assert [(s.name, s.waiting_reason) for s in got.stages] == [("build", no_windows)]

    # An agent with the label takes the stage at once: no poll interval, no retry delay.
    joined = time.monotonic()
    agents.append(Agent(tmp_path, controller, "win", labels="os=windows"))
    done = controller.wait_run(win, number, 60)
    took = time.monotonic() - joined
    assert done["status"] == "succeeded" and done["waiting_reason"] == ""
    [stage] = done["stages"]
    assert (stage["agent"], stage["waiting_reason"], stage["attempt"]) == ("win", "", 1)
    assert took < 30, took  # a hang guard: the agent's start dominates

    # The only matching agent busy, then drained by an operator.
    lin = online(controller, "lin")
    hold = controller.create_pipeline(HOLD)
    first = controller.trigger(hold)
    wait_for(lambda: controller.stage(hold, first, "hold")["status"] == "running", 30, "hold running")
    second = controller.trigger(hold)
    reason_of(controller, hold, second, "hold", "the only matching agent, lin, is busy (1 of 1 slots)")
    status, body, _ = controller.request("POST", f"/api/v1/agents/{lin['id']}/drain")
    assert status == 200, body
    drained = (
        "the only matching agent, lin, is draining (drained by an operator: resume it to give it stages)"
    )
    reason_of(controller, hold, second, "hold", drained)
    for number_ in (first, second):
        controller.request("POST", f"/api/v1/pipelines/{hold}/runs/{number_}/cancel")


async def test_the_queue_timeout_ends_a_stage_no_agent_took_and_its_run(
    fleet: tuple[Controller, list[Agent]], tmp_path: Path
) -> None:
    controller, agents = fleet
    agents.append(Agent(tmp_path, controller, "lin", labels="os=linux"))
    online(controller, "lin")
    never = controller.create_pipeline(NEVER)
    number = controller.trigger(never)
    run = controller.wait_run(never, number, 60)
    assert run["status"] == "error" and run["waiting_reason"] == ""
    stages = {s["name"]: s for s in run["stages"]}
    assert stages["plan9"]["status"] == "error"
    assert stages["plan9"]["message"] == (
        "no agent took it within 3s: no connected agent has os=plan9; agents: lin (os=linux)"
    )
    assert (stages["after"]["status"], stages["after"]["message"]) == ("skipped", "skipped: needs plan9")

    # A bad value is refused where it is written, and nothing is stored.
    bad = 'pipeline "bad"\nstage "s" {\n    run "x"\n    queue-timeout "soon"\n}\n'
    status, body, _ = controller.request("POST", "/api/v1/pipelines", {"config": bad})
    assert status == 422, body
    [problem] = body["extra"]["diagnostics"]
    assert (problem["line"], problem["col"]) == (4, 5), problem
    assert problem["message"] == "bad duration 'soon' for 'queue-timeout' in stage 's'"
    assert problem["text"].startswith(".buildit.kdl:4:5: error: bad duration 'soon'"), problem
    status, listed, _ = controller.request("GET", "/api/v1/pipelines")
    assert "bad" not in {p["name"] for p in listed["pipelines"]}
