"""REST: GET /api/v1/agents — the fleet as the scheduler sees it."""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, get
from litestar.datastructures import State

from controller.agents.tables import Agent
from controller.services import Services


class AgentsController(Controller):
    """The agent fleet."""

    path = "/api/v1/agents"
    tags = ["agents"]

    @get("/")
    async def list_agents(self, state: State) -> dict[str, Any]:
        """Every registered agent: status, labels, executors, capacity, running stages, last seen."""
        svc: Services = state.services
        rows = await Agent.select().where(Agent.tenant == svc.tenant).order_by(Agent.name)
        out = []
        for row in rows:
            live = svc.scheduler.agent_by_id(row["id"])
            online = live is not None and live.online
            draining = live.draining if live is not None else row["draining"]
            last_seen = live.last_seen if live is not None and live.last_seen else row["last_seen"]
            labels, executors = row["labels"], row["executors"]
            out.append(
                {
                    "id": str(row["id"]),
                    "name": row["name"],
                    "status": ("draining" if draining else "online") if online else "offline",
                    "labels": json.loads(labels) if isinstance(labels, str) else labels,
                    "executors": json.loads(executors) if isinstance(executors, str) else executors,
                    "capacity": row["capacity"],
                    "running": len(live.running) if live is not None else 0,
                    "last_seen": last_seen.isoformat() if last_seen else None,
                    "version": row["version"],
                    "registered_at": row["registered_at"].isoformat() if row["registered_at"] else None,
                }
            )
        return {"agents": out}
