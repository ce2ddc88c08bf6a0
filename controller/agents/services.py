"""Agent registration and token authentication.

Agents join with the controller's registration token and receive their own long-lived token,
which is stored only as a SHA-256 hash. Authentication of every later call is a hash lookup,
cached in memory (agents call several times a second).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.agents.tables import Agent
from controller.db.columns import loaded
from controller.errors import AlreadyExists, Conflict, Invalid, NotFound, Unauthenticated
from controller.names import check_name
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


async def list_agent_views(scheduler: Scheduler, tenant: UUID) -> list[AgentView]:
    """Every registered agent of a tenant, by name, with its live status (REST and gRPC share this)."""
    rows = await Agent.select().where(Agent.tenant == tenant).order_by(Agent.name)
    return [_view(scheduler, row) for row in rows]


async def agent_view(scheduler: Scheduler, tenant: UUID, agent_id: UUID) -> AgentView | None:
    """One agent of a tenant with its live status, or None."""
    row = await Agent.select().where((Agent.tenant == tenant) & (Agent.id == agent_id)).first()
    return _view(scheduler, row) if row is not None else None


async def set_drain(scheduler: Scheduler, tenant: UUID, agent_id: UUID, draining: bool) -> AgentView:
    """Drain or resume an agent of a tenant for an operator (REST, gRPC and the UI's buttons).

    The tenant is checked against the stored row first, so one tenant cannot drain another's.
    """
    missing = NotFound(f"agent {agent_id} not found; list agents with GET /api/v1/agents")
    if await agent_view(scheduler, tenant, agent_id) is None:
        raise missing
    await scheduler.set_operator_drain(agent_id, draining)
    view = await agent_view(scheduler, tenant, agent_id)
    if view is None:
        raise missing
    return view


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
        """Enrol an agent (or re-enrol one that lost its token); returns (agent id, agent token)."""
        if not hmac.compare_digest(registration_token.encode(), self.registration_token.encode()):
            raise Unauthenticated("wrong registration token")
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
        existing = (
            await Agent.select(Agent.id).where((Agent.tenant == self.tenant) & (Agent.name == name)).first()
        )
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
                }
            ).where(Agent.id == agent_id)
        else:
            agent_id = uuid.uuid4()
            await Agent.insert(
                Agent(
                    id=agent_id,
                    org=self.org,
                    tenant=self.tenant,
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
            AgentConn(agent_id, name, dict(labels), tuple(executors), capacity, version)
        )
        return agent_id, token

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
