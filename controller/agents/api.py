"""REST: the fleet as the scheduler sees it — list agents; show, drain, resume or remove one."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from controller.agents.commands import remove_agent
from controller.agents.services import agent_json, agent_view, list_agent_views, set_drain
from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import NotFound


class AgentsController(Controller):
    """The agent fleet."""

    path = "/api/v1/agents"
    opt = requires(Permission.READ)
    tags = ["agents"]

    @get("/")
    async def list_agents(self, deps: NamedDependency[Deps]) -> dict[str, Any]:
        """Every registered agent: status, labels, executors, capacity, running stages, last seen."""
        views = await list_agent_views(deps.scheduler, deps.tenant)
        return {"agents": [agent_json(v) for v in views]}

    @get("/{agent_id:uuid}")
    async def get_agent(self, deps: NamedDependency[Deps], agent_id: FromPath[UUID]) -> dict[str, Any]:
        """One agent the tenant sees, as the list shows it."""
        view = await agent_view(deps.scheduler, deps.tenant, agent_id)
        if view is None:
            raise NotFound(f"agent {agent_id} not found; list agents with GET /api/v1/agents")
        return agent_json(view)

    @post("/{agent_id:uuid}/drain", status_code=200, opt=requires(Permission.MANAGE))
    async def drain(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], agent_id: FromPath[UUID]
    ) -> dict[str, Any]:
        """Take no new stages on this agent (running ones finish); holds until resumed, across restarts."""
        return await _set_drain(deps, caller, agent_id, True)

    @post("/{agent_id:uuid}/resume", status_code=200, opt=requires(Permission.MANAGE))
    async def resume(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], agent_id: FromPath[UUID]
    ) -> dict[str, Any]:
        """Undo an operator's drain: the agent takes queued stages again at once."""
        return await _set_drain(deps, caller, agent_id, False)

    @delete("/{agent_id:uuid}", status_code=204, opt=requires(Permission.MANAGE))
    async def remove(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], agent_id: FromPath[UUID]
    ) -> None:
        """Remove an agent that is not connected (409 while it is); its token stops working."""
        await remove_agent(deps.scheduler, deps.registry, caller, agent_id)


async def _set_drain(deps: Deps, caller: Caller, agent_id: UUID, draining: bool) -> dict[str, Any]:
    view = await set_drain(deps.scheduler, deps.tenant, agent_id, draining, org_admin=caller.is_org_admin)
    await audit.record("agent.drain" if draining else "agent.resume", view.name, caller=caller)
    return agent_json(view)
