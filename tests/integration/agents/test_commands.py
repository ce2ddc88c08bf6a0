"""Removing an agent through REST and gRPC, with a real controller and real `buildit agent` processes
(SQLite and PostgreSQL): refused while it is connected, done once it is gone, its token dead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Agent, Controller, controller_with_agents, wait_for


def agent_named(controller: Controller, name: str, status: str | None = None) -> dict[str, Any] | None:
    return next(
        (a for a in controller.agents() if a["name"] == name and (status is None or a["status"] == status)),
        None,
    )


def test_a_connected_agent_is_refused_an_offline_one_removed_and_its_token_dies(
    tmp_path: Path, database_url: str
) -> None:
    with controller_with_agents(tmp_path, database_url) as (controller, agents):
        box = Agent(tmp_path, controller, "box")
        agents.append(box)
        first = wait_for(lambda: agent_named(controller, "box", "online"), 30, "box online")
        path = f"/api/v1/agents/{first['id']}"

        status, body, _ = controller.request("DELETE", path)
        assert status == 409 and "agent box is connected: stop its process first" in body["detail"], body
        with controller.channel() as channel, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.BuildItServiceStub(channel).RemoveAgent(pb.RemoveAgentRequest(agent_id=first["id"]))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert agent_named(controller, "box", "online") is not None

        box.stop()
        wait_for(lambda: agent_named(controller, "box", "offline"), 30, "box offline")
        status, body, _ = controller.request("DELETE", path)
        assert status == 204, body
        assert agent_named(controller, "box") is None
        status, body, _ = controller.request("DELETE", path)
        assert status == 404, body
        status, events, _ = controller.request("GET", "/api/v1/audit")
        done = [f"{e['action']} {e['target']}" for e in events["events"]]
        assert f"agent.remove box ({first['id']})" in done

        # Started again with its state dir, the agent's stored token is refused: it enrols anew.
        again = Agent(tmp_path, controller, "box")
        agents.append(again)
        second = wait_for(lambda: agent_named(controller, "box", "online"), 30, "box back online")
        assert second["id"] != first["id"]
        assert "does not accept our agent token" in again.proc.output

        # gRPC removes an offline agent too.
        again.stop()
        wait_for(lambda: agent_named(controller, "box", "offline"), 30, "box offline again")
        with controller.channel() as channel:
            pb_grpc.BuildItServiceStub(channel).RemoveAgent(pb.RemoveAgentRequest(agent_id=second["id"]))
        assert agent_named(controller, "box") is None
