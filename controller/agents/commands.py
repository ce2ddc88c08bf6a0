"""The agent operations people run (not the agents themselves): removing an agent that is gone.

REST (`DELETE /api/v1/agents/{id}`), gRPC (`RemoveAgent`) and the agents page's *Remove* button (which
calls the REST API) adapt `remove_agent`.
"""

from __future__ import annotations

from uuid import UUID

from controller.agents.services import AgentRegistry, delete_agent_row, visible_agent
from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.errors import Forbidden, NotFound
from controller.scheduling.scheduler import Scheduler


async def remove_agent(scheduler: Scheduler, registry: AgentRegistry, caller: Caller, agent_id: UUID) -> str:
    """Remove an agent that is not connected; returns its name.

    Why: a machine that is gone for good stays listed as offline forever otherwise. Refused while
    the agent is connected (Conflict: it would only come back; stop it first). The agent's token
    stops working at once; stages it ran keep their history; a stage whose lease it still held
    is requeued. Scoped like drain: another tenant's agent is NotFound, and the org-wide pool,
    shared by every tenant, is removed only by an organization owner or admin.
    """
    row = await visible_agent(caller.tenant, agent_id)
    if row is None:
        raise NotFound(f"agent {agent_id} not found; list agents with GET /api/v1/agents")
    if row["org_wide"] and not caller.is_org_admin:
        raise Forbidden(
            "this agent serves every tenant of the organization: an org owner or admin removes it"
        )
    await scheduler.remove_agent(agent_id)  # Conflict while connected: nothing changed
    registry.forget(agent_id)
    await delete_agent_row(agent_id)
    registry.forget(agent_id)  # a call that authenticated from the row in between is not cached
    await audit.record("agent.remove", f"{row['name']} ({agent_id})", caller=caller)
    return str(row["name"])
