"""REST: the fleet as the scheduler sees it — list agents, drain and resume one."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, get, post
from litestar.datastructures import State

from controller.agents.services import agent_json, list_agent_views, set_drain
from controller.api_errors import error
from controller.services import Services


class AgentsController(Controller):
    """The agent fleet."""

    path = "/api/v1/agents"
    tags = ["agents"]

    @get("/")
    async def list_agents(self, state: State) -> dict[str, Any]:
        """Every registered agent: status, labels, executors, capacity, running stages, last seen."""
        svc: Services = state.services
        views = await list_agent_views(svc.scheduler, svc.tenant)
        return {"agents": [agent_json(v) for v in views]}

    @post("/{agent_id:uuid}/drain", status_code=200)
    async def drain(self, state: State, agent_id: UUID) -> dict[str, Any]:
        """Take no new stages on this agent (running ones finish); holds until resumed, across restarts."""
        return await _set_drain(state, agent_id, True)

    @post("/{agent_id:uuid}/resume", status_code=200)
    async def resume(self, state: State, agent_id: UUID) -> dict[str, Any]:
        """Undo an operator's drain: the agent takes queued stages again at once."""
        return await _set_drain(state, agent_id, False)


async def _set_drain(state: State, agent_id: UUID, draining: bool) -> dict[str, Any]:
    svc: Services = state.services
    view = await set_drain(svc.scheduler, svc.tenant, agent_id, draining)
    if view is None:
        raise error(404, f"agent {agent_id} not found; list agents with GET /api/v1/agents")
    return agent_json(view)
