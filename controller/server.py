"""The controller process: HTTP (Litestar on uvicorn) and gRPC (grpc.aio) on one event loop.

`serve()` opens the database (migrating it), rebuilds the scheduler's state from it (leases that
expired while the controller was down are requeued), then serves until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import uvicorn
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from controller import __version__
from controller.agents.services import AgentRegistry
from controller.app import create_app
from controller.db.engine import close_database, open_database
from controller.events import EventBus
from controller.orgs.services import ensure_default_org_and_tenant
from controller.rpc.agent_service import AgentServicer
from controller.rpc.auth import AgentAuthInterceptor
from controller.rpc.buildit_service import BuildItServicer
from controller.runs.logs import LogStore
from controller.scheduling.scheduler import Scheduler
from controller.scheduling.store import PiccoloStore
from controller.services import Services
from controller.settings import ControllerSettings

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A started controller: where it listens, and how to stop it."""

    services: Services
    http_port: int
    grpc_port: int
    stop: Callable[[], Awaitable[None]]


async def start(settings: ControllerSettings) -> Running:
    """Start HTTP and gRPC servers; returns once both accept connections."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = await open_database(settings.database_url)
    org, tenant = await ensure_default_org_and_tenant()
    events = EventBus()
    logs = LogStore(settings.data_dir / "logs")
    scheduler = Scheduler(
        PiccoloStore(org, tenant),
        logs,
        events,
        lease_ttl_s=settings.lease_ttl_s,
        heartbeat_interval_s=settings.heartbeat_s,
    )
    await scheduler.start()
    registry = AgentRegistry(scheduler, settings.registration_token, __version__, org, tenant)
    services = Services(scheduler, registry, logs, events, org, tenant)

    grpc_server = aio.server(
        interceptors=[AgentAuthInterceptor(registry.authenticate)], options=[("grpc.http2.bdp_probe", 0)]
    )
    pb_grpc.add_AgentServiceServicer_to_server(AgentServicer(scheduler, registry), grpc_server)
    pb_grpc.add_BuildItServiceServicer_to_server(BuildItServicer(services), grpc_server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    names = (
        pb.DESCRIPTOR.services_by_name["AgentService"].full_name,
        pb.DESCRIPTOR.services_by_name["BuildItService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, grpc_server)
    grpc_port = grpc_server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if grpc_port == 0:
        raise OSError(f"cannot listen for gRPC on {settings.grpc_host}:{settings.grpc_port}")
    await grpc_server.start()
    for name in (*names[:2], ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    app = create_app(services, settings.max_body_bytes)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    http = uvicorn.Server(config)
    # Not `serve()`: it captures SIGINT/SIGTERM, which belong to the process (see controller.cli).
    http_task = asyncio.create_task(http._serve(), name="http")
    while not http.started:
        if http_task.done():
            await http_task
            raise OSError(f"cannot listen for HTTP on {settings.http_host}:{settings.http_port}")
        await asyncio.sleep(0.01)
    http_port = http.servers[0].sockets[0].getsockname()[1]

    async def stop() -> None:
        await health_servicer.enter_graceful_shutdown()
        http.should_exit = True
        await scheduler.stop()
        await grpc_server.stop(grace=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await http_task
        await close_database(engine)

    return Running(services, http_port, grpc_port, stop)
