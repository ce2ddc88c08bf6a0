"""The fleet as the scheduler sees it: registered agents, their lease streams, what is sent on them.

Events on a lease stream are the shared contract's dataclasses (`agent.contract.types`): the
scheduler puts a `StageLease` or a `CancelStage` on an agent's queue, and the gRPC servicer sends it
through `agent.contract.convert`, the same codec the agent reads it with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from agent.contract.types import CancelStage, StageLease

#: What the scheduler tells an agent on its lease stream.
AgentEvent = StageLease | CancelStage


class StreamClosed:
    """Put on a lease stream's queue to end it (a newer stream opened, or the controller stops)."""


#: The one instance of `StreamClosed`.
CLOSE = StreamClosed()


@dataclass(eq=False)
class AgentConn:
    """A registered agent as the scheduler sees it."""

    id: UUID
    name: str
    labels: dict[str, str]
    executors: tuple[str, ...]
    capacity: int
    version: str
    running: set[str] = field(default_factory=set)
    events: asyncio.Queue[AgentEvent | StreamClosed] | None = None
    stream_id: int = 0
    agent_draining: bool = False
    operator_draining: bool = False
    last_seen: datetime | None = None
    #: Whose stages it takes: an org's (`tenant` None: every tenant of it); `org` None: anyone's.
    org: UUID | None = None
    tenant: UUID | None = None

    def serves(self, org: UUID | None, tenant: UUID | None) -> bool:
        """Whether this agent's registration token covers a stage of `org`/`tenant`."""
        if self.org is None or org is None:
            return True
        return self.org == org and (self.tenant is None or self.tenant == tenant)

    @property
    def online(self) -> bool:
        """Has an open lease stream."""
        return self.events is not None

    @property
    def draining(self) -> bool:
        """Effectively draining: the agent said so (SIGTERM) or an operator drained it."""
        return self.agent_draining or self.operator_draining

    @property
    def drain_requested_by(self) -> str | None:
        """Who drains it: "operator" (wins: it outlives the agent process), "agent", or None."""
        if self.operator_draining:
            return "operator"
        return "agent" if self.agent_draining else None

    @property
    def free(self) -> int:
        """Slots free for new leases (none while draining or disconnected)."""
        if not self.online or self.draining:
            return 0
        return self.capacity - len(self.running)
