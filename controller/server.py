"""The controller process: HTTP (Litestar on uvicorn) and gRPC (grpc.aio) on one event loop.

`start()` makes the data directory private (0700) and holds its lock, opens the database
(migrating it), opens the master key (checked against the database: a wrong or missing key stops
the start with a clear message, see controller.secrets.unlock), rebuilds the scheduler's state
(leases that expired while the controller was down are requeued), then serves until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import grpc
import uvicorn
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from controller import __version__, datadir
from controller.agents.services import AgentRegistry
from controller.app import create_app
from controller.artifacts import services as artifact_rows
from controller.artifacts.store import ArtifactStore
from controller.auth.agent_tokens import adopt_token
from controller.auth.commands import ensure_admin, initial_password
from controller.auth.keyfiles import session_key
from controller.auth.oidc import OidcClient, OidcSettings
from controller.auth.policy import Policy
from controller.db.engine import close_database, open_database
from controller.deps import Deps
from controller.events import EventBus
from controller.forge.reporter import StatusReporter
from controller.http import WebSecurity
from controller.notify.delivery import DeliveryPolicy, DeliveryWorker
from controller.orgs.services import ensure_default_org_and_tenant
from controller.rpc.agent_service import AgentServicer
from controller.rpc.auth import AgentAuth
from controller.rpc.buildit_service import BuildItServicer
from controller.rpc.errors import ErrorMapping
from controller.rpc.user_auth import UserAuth
from controller.rpc.wrapping import GuardingInterceptor
from controller.scheduling.db_store import PiccoloStore
from controller.scheduling.logs import LogStore
from controller.scheduling.model import StageState
from controller.scheduling.scheduler import Scheduler
from controller.secrets.services import StoredSecrets
from controller.secrets.unlock import unlock
from controller.settings import ControllerSettings
from controller.tls import read_tls_files
from controller.triggers.trigger_engine import TriggerEngine

log = logging.getLogger(__name__)

#: How long open requests and gRPC calls get to finish when the controller stops.
STOP_GRACE_S = 1.0


@dataclass
class Running:
    """A started controller: where it listens, and how to stop it."""

    deps: Deps
    http_port: int
    grpc_port: int
    #: `stop()` stops everything gracefully (open requests and calls get a moment to finish);
    #: `stop(True)` at once.
    stop: Callable[..., Awaitable[None]]
    #: The first admin's generated password while `<data dir>/initial-admin-password` exists.
    admin_password: str | None = None
    #: Make a stop under way finish at once (the operator asked a second time).
    hurry: Callable[[], None] = lambda: None


async def start(settings: ControllerSettings) -> Running:
    """Start HTTP and gRPC servers; returns once both accept connections.

    Raises MasterKeyError (before serving anything) when the master key is missing or is not the
    database's, and DataDirBusy while offline maintenance (`buildit admin`) holds the data dir.
    """
    datadir.make_private(settings.data_dir)
    lock = datadir.running_lock(settings.data_dir)
    # dulwich logs every served fetch and watchfiles every change at INFO: noise in `buildit up`.
    for chatty in ("dulwich", "watchfiles"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        engine = await open_database(settings.database_url)
    except BaseException:
        lock.release()
        raise
    try:
        box = await unlock(settings.data_dir, settings.secret_key)
        org, tenant = await ensure_default_org_and_tenant()
        await ensure_admin(settings.data_dir, org)
        if settings.registration_token:
            # The token of `.buildit/` or BUILDIT_REGISTRATION_TOKEN stays an org-wide registration token.
            await adopt_token(org, settings.registration_token, "default")
    except BaseException:
        await close_database(engine)
        lock.release()
        raise
    events = EventBus()
    logs = LogStore(settings.data_dir / "logs")
    scheduler = Scheduler(
        PiccoloStore(org, tenant),
        logs,
        events,
        lease_ttl_s=settings.lease_ttl_s,
        heartbeat_interval_s=settings.heartbeat_s,
        secrets=StoredSecrets(box),
    )
    await scheduler.start()
    registry = AgentRegistry(scheduler, settings.registration_token, __version__, org, tenant)
    triggers = TriggerEngine(scheduler, org, tenant, settings.data_dir / "mirrors", box)
    artifact_store = ArtifactStore(settings.data_dir / "artifacts")
    scheduler.lease_listeners.append(_forget_artifacts_of_earlier_attempts())
    deps = Deps(
        scheduler,
        registry,
        logs,
        events,
        org,
        tenant,
        triggers=triggers,
        artifacts=artifact_store,
        secret_box=box,
    )
    deps.secure_cookies = settings.public_url.startswith("https://")
    deps.public_url = settings.public_url
    deps.repo_hosts = settings.repo_hosts
    oidc_settings = OidcSettings.from_env()
    deps.oidc = OidcClient(oidc_settings) if oidc_settings is not None else None

    policy = Policy(deps.authenticator, org, tenant)
    grpc_server = aio.server(
        interceptors=[
            GuardingInterceptor(
                [ErrorMapping(), AgentAuth(registry.authenticate), UserAuth(policy, deps.authenticator)]
            )
        ],
        options=[("grpc.http2.bdp_probe", 0)],
    )
    pb_grpc.add_AgentServiceServicer_to_server(
        AgentServicer(scheduler, registry, artifact_store, settings.artifact_max_bytes), grpc_server
    )
    pb_grpc.add_BuildItServiceServicer_to_server(BuildItServicer(deps), grpc_server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    names = (
        pb.DESCRIPTOR.services_by_name["AgentService"].full_name,
        pb.DESCRIPTOR.services_by_name["BuildItService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, grpc_server)
    grpc_port = _listen(grpc_server, settings)
    if grpc_port == 0:
        raise OSError(f"cannot listen for gRPC on {settings.grpc_host}:{settings.grpc_port}")
    await grpc_server.start()
    for name in (*names[:2], ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    app = create_app(
        deps,
        settings.max_body_bytes,
        csrf_secret=session_key(settings.data_dir),
        security=WebSecurity(settings.public_url, settings.http_body_timeout_s),
    )
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
    public_url = settings.public_url or f"http://{_url_host(settings.http_host)}:{http_port}"
    triggers.git_base_url = f"{public_url}/git"
    reporter = StatusReporter(triggers, events, public_url)
    await reporter.start()
    notifier = DeliveryWorker(events, box, public_url, DeliveryPolicy.of(settings))
    await notifier.start()
    await triggers.start()

    hurried = asyncio.Event()

    def hurry() -> None:
        hurried.set()
        http.should_exit = True
        http.force_exit = True  # uvicorn stops waiting for open connections (a /ws, a log follow)

    async def stop(now: bool = False) -> None:
        if now:
            hurry()
        await health_servicer.enter_graceful_shutdown()
        http.should_exit = True
        await triggers.stop()
        await reporter.stop()
        await notifier.stop()
        await scheduler.stop()
        await grpc_server.stop(grace=0 if hurried.is_set() else STOP_GRACE_S)
        try:
            # Open connections (a browser's /ws, a followed log) get the same moment as gRPC calls.
            async with asyncio.timeout(STOP_GRACE_S):
                await asyncio.shield(http_task)
        except TimeoutError:
            hurry()
        with contextlib.suppress(asyncio.CancelledError):
            await http_task
        await close_database(engine)
        lock.release()

    return Running(deps, http_port, grpc_port, stop, initial_password(settings.data_dir), hurry)


def _listen(server: aio.Server, settings: ControllerSettings) -> int:
    """Bind the gRPC port: TLS with the configured certificate and key, else plaintext; 0 = failed."""
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return int(server.add_insecure_port(address))
    files = read_tls_files(settings.grpc_tls_cert, settings.grpc_tls_key)
    credentials = grpc.ssl_server_credentials([(files.key_pem, files.cert_pem)])
    return int(server.add_secure_port(address, credentials))


def _url_host(host: str) -> str:
    """The host part of the URL agents use: a wildcard bind means "this machine"; IPv6 in brackets."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _forget_artifacts_of_earlier_attempts() -> Callable[[StageState], None]:
    """A lease listener: when a stage is leased again, drop what its earlier attempts uploaded.

    The cut-off is taken when the lease is granted, so whatever the new attempt uploads (always
    later) is kept however late the deletion runs. Runs as a task: listeners are synchronous and
    are called inside the scheduler's transaction.
    """
    pending: set[asyncio.Task[None]] = set()

    async def forget(stage_id: UUID, before: datetime) -> None:
        try:
            await artifact_rows.forget_earlier_attempts(stage_id, before)
        except Exception:
            log.exception("could not drop the artifacts of earlier attempts of stage %s", stage_id)

    def on_lease(stage: StageState) -> None:
        if stage.attempt > 1:
            # A fresh context: this listener runs inside the scheduler's transaction, which Piccolo
            # finds through a context variable the task would otherwise inherit (and outlive).
            task = asyncio.create_task(forget(stage.id, datetime.now(UTC)), context=contextvars.Context())
            pending.add(task)
            task.add_done_callback(pending.discard)

    return on_lease
