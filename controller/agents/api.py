"""REST: GET /api/v1/agents — the fleet as the scheduler sees it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.datastructures import State

from controller.agents.services import list_agent_views
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
        return {
            "agents": [
                {
                    "id": str(v.id),
                    "name": v.name,
                    "status": v.status,
                    "labels": v.labels,
                    "executors": v.executors,
                    "capacity": v.capacity,
                    "running": v.running,
                    "last_seen": v.last_seen.isoformat() if v.last_seen else None,
                    "version": v.version,
                    "registered_at": v.registered_at.isoformat() if v.registered_at else None,
                }
                for v in views
            ]
        }
