"""Agent registration and token authentication.

Agents join with the controller's registration token and receive their own long-lived token,
which is stored only as a SHA-256 hash. Authentication of every later call is a hash lookup,
cached in memory (agents call several times a second).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.agents.tables import Agent
from controller.auth import agent_tokens
from controller.db.columns import loaded
from controller.errors import AlreadyExists, Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from controller.names import check_name
from controller.orgs.tables import Tenant
from controller.scheduling.fleet import AgentConn
from controller.scheduling.scheduler import Scheduler

MAX_CAPACITY = 256


@dataclass(frozen=True)
class AgentView:
    """An agent as APIs show it: the stored row merged with the scheduler's live view."""

    id: UUID
    name: str
    status: str  # online | offline | draining
    labels: dict[str, str]
    executors: list[str]
    capacity: int
    running: int
    last_seen: datetime | None
    version: str
    registered_at: datetime | None
    drain_requested_by: str | None = None  # "operator" | "agent" | None
    #: Serves every tenant of the org (enrolled with an org-wide token): only org admins drain it.
    org_wide: bool = False


def _view(scheduler: Scheduler, row: dict[str, Any]) -> AgentView:
    live = scheduler.agent_by_id(row["id"])
    online = live is not None and live.online
    operator = live.operator_draining if live is not None else bool(row["operator_drain"])
    # The agent's own drain matters only while it is connected (a drained agent exits);
    # an operator's drain holds until resumed, so it is shown for an offline agent too.
    by_agent = online and live is not None and live.agent_draining
    requested_by = "operator" if operator else ("agent" if by_agent else None)
    return AgentView(
        id=row["id"],
        name=row["name"],
        status=("draining" if requested_by else "online") if online else "offline",
        labels=dict(loaded(row["labels"])),
        executors=list(loaded(row["executors"])),
        capacity=row["capacity"],
        running=len(live.running) if live is not None else 0,
        last_seen=live.last_seen if live is not None and live.last_seen else row["last_seen"],
        version=row["version"],
        registered_at=row["registered_at"],
        drain_requested_by=requested_by,
        org_wide=bool(row.get("org_wide")),
    )


def agent_json(v: AgentView) -> dict[str, Any]:
    """One agent as the REST API and the live updates show it (one shape for both)."""
    return {
        "id": str(v.id),
        "name": v.name,
        "status": v.status,
        "drain_requested_by": v.drain_requested_by,
        "labels": v.labels,
        "executors": v.executors,
        "capacity": v.capacity,
        "running": v.running,
        "last_seen": v.last_seen.isoformat() if v.last_seen else None,
        "version": v.version,
        "registered_at": v.registered_at.isoformat() if v.registered_at else None,
    }


def _visible(tenant: UUID) -> Any:
    """The agents a tenant sees: its own, and the org-wide pool of its organization."""
    org = Tenant.select(Tenant.org).where(Tenant.id == tenant)
    return (Agent.tenant == tenant) | ((Agent.org_wide == True) & Agent.org.is_in(org))  # noqa: E712


async def list_agent_views(scheduler: Scheduler, tenant: UUID) -> list[AgentView]:
    """The agents a tenant sees (its own and its org's pool), by name, with their live status."""
    rows = await Agent.select().where(_visible(tenant)).order_by(Agent.name)
    return [_view(scheduler, row) for row in rows]


async def agent_view(scheduler: Scheduler, tenant: UUID, agent_id: UUID) -> AgentView | None:
    """One agent a tenant sees, with its live status, or None."""
    row = await Agent.select().where(_visible(tenant) & (Agent.id == agent_id)).first()
    return _view(scheduler, row) if row is not None else None


async def set_drain(
    scheduler: Scheduler, tenant: UUID, agent_id: UUID, draining: bool, *, org_admin: bool = False
) -> AgentView:
    """Drain or resume an agent for an operator (REST, gRPC and the UI's buttons).

    The tenant is checked against the stored row first, so one tenant cannot drain another's;
    the org-wide pool, shared by every tenant, is drained only by an org owner or admin.
    """
    missing = NotFound(f"agent {agent_id} not found; list agents with GET /api/v1/agents")
    row = (
        await Agent.select(Agent.tenant, Agent.org_wide)
        .where(_visible(tenant) & (Agent.id == agent_id))
        .first()
    )
    if row is None:
        raise missing
    if row["org_wide"] and not org_admin:
        raise Forbidden("this agent serves every tenant of the organization: an org owner or admin drains it")
    await scheduler.set_operator_drain(agent_id, draining)
    view = await agent_view(scheduler, tenant, agent_id)
    if view is None:
        raise missing
    return view


async def visible_agent(tenant: UUID, agent_id: UUID) -> dict[str, Any] | None:
    """An agent's id, name and whether it is in the org-wide pool, if `tenant` sees it (else None)."""
    row: dict[str, Any] | None = (
        await Agent.select(Agent.id, Agent.name, Agent.org_wide)
        .where(_visible(tenant) & (Agent.id == agent_id))
        .first()
    )
    return row


async def delete_agent_row(agent_id: UUID) -> None:
    """Delete an agent's row; the stages it ran keep their history without it (agent set null)."""
    await Agent.delete().where(Agent.id == agent_id)


def hash_token(token: str) -> str:
    """How agent tokens are stored (never in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()


def compatible(agent_version: str, controller_version: str) -> bool:
    """Same major.minor: the protocol is stable within a minor series."""
    return agent_version.split(".")[:2] == controller_version.split(".")[:2]


class AgentRegistry:
    """See the module docstring."""

    def __init__(
        self, scheduler: Scheduler, registration_token: str, version: str, org: UUID, tenant: UUID
    ) -> None:
        self.scheduler = scheduler
        self.registration_token = registration_token
        self.version = version
        self.org = org
        self.tenant = tenant
        self._by_hash: dict[str, UUID] = {}

    async def register(
        self,
        registration_token: str,
        name: str,
        labels: dict[str, str],
        executors: list[str],
        capacity: int,
        version: str,
    ) -> tuple[UUID, str]:
        """Enrol an agent (or re-enrol one that lost its token); returns (agent id, agent token).

        The registration token decides whose stages the agent takes: a tenant's token, that
        tenant's; an org-wide token, every tenant of the org."""
        scope = await agent_tokens.scope_of(registration_token) if registration_token else None
        if scope is None:
            raise Unauthenticated("wrong or revoked registration token")
        tenant = scope.tenant or self.tenant
        org_wide = scope.tenant is None
        if not compatible(version, self.version):
            raise Conflict(
                f"agent version {version or '(none)'} is not compatible with "
                f"controller version {self.version}; "
                "run an agent of the same major.minor version",
            )
        name = name.strip()
        if not name or len(name) > 128:
            raise Invalid("agent name must be 1-128 characters")
        check_name(name, "agent name")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise Invalid(
                f"capacity must be between 1 and {MAX_CAPACITY}, got {capacity}",
            )
        if not executors:
            raise Invalid("an agent must offer at least one executor")
        token = secrets.token_urlsafe(32)
        token_hash = hash_token(token)
        existing = await Agent.select(Agent.id).where((Agent.tenant == tenant) & (Agent.name == name)).first()
        if existing is not None:
            agent_id = existing["id"]
            conn = self.scheduler.agent_by_id(agent_id)
            if conn is not None and conn.online:
                raise AlreadyExists(
                    f"an agent named '{name}' is connected right now; give this agent another --name",
                )
            self._by_hash = {h: a for h, a in self._by_hash.items() if a != agent_id}
            await Agent.update(
                {
                    Agent.token_hash: token_hash,
                    Agent.labels: labels,
                    Agent.executors: executors,
                    Agent.capacity: capacity,
                    Agent.version: version,
                    Agent.org_wide: org_wide,
                }
            ).where(Agent.id == agent_id)
        else:
            agent_id = uuid.uuid4()
            await Agent.insert(
                Agent(
                    id=agent_id,
                    org=scope.org,
                    tenant=tenant,
                    org_wide=org_wide,
                    name=name,
                    token_hash=token_hash,
                    labels=labels,
                    executors=executors,
                    capacity=capacity,
                    version=version,
                    status="offline",
                    registered_at=datetime.now(UTC),
                )
            )
        self._by_hash[token_hash] = agent_id
        await self.scheduler.agent_registered(
            AgentConn(
                agent_id,
                name,
                dict(labels),
                tuple(executors),
                capacity,
                version,
                org=scope.org,
                tenant=None if org_wide else tenant,
            )
        )
        return agent_id, token

    def forget(self, agent_id: UUID) -> None:
        """Stop accepting a removed agent's token at once (authentication caches it)."""
        self._by_hash = {h: a for h, a in self._by_hash.items() if a != agent_id}

    async def authenticate(self, token: str) -> UUID | None:
        """The agent a token belongs to, or None."""
        token_hash = hash_token(token)
        cached = self._by_hash.get(token_hash)
        if cached is not None:
            return cached
        row = await Agent.select(Agent.id).where(Agent.token_hash == token_hash).first()
        if row is None:
            return None
        self._by_hash[token_hash] = row["id"]
        return UUID(str(row["id"]))
