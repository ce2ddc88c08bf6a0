"""The controller's long-lived services, built once per process and shared by HTTP and gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from controller.agents.services import AgentRegistry
from controller.events import EventBus
from controller.runs.logs import LogStore
from controller.scheduling.scheduler import Scheduler


@dataclass
class Services:
    """Everything request handlers need; held in the Litestar app state."""

    scheduler: Scheduler
    registry: AgentRegistry
    logs: LogStore
    events: EventBus
    org: UUID
    tenant: UUID
