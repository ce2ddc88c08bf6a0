"""The controller's long-lived services, built once per process and shared by HTTP and gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from controller.agents.services import AgentRegistry
from controller.events import EventBus
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler

if TYPE_CHECKING:
    from controller.artifacts.store import ArtifactStore
    from controller.triggers.engine import TriggerEngine


@dataclass
class Services:
    """Everything request handlers need; held in the Litestar app state."""

    scheduler: Scheduler
    registry: AgentRegistry
    logs: LogStore
    events: EventBus
    org: UUID
    tenant: UUID
    #: Watched repositories (set by the server once it starts; None in tests that need none).
    triggers: TriggerEngine | None = None
    #: Artifact content under the data dir (None in tests that need none).
    artifacts: ArtifactStore | None = None
