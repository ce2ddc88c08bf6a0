"""create_app(): the Litestar application, assembled in one place."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Router, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.types import Scope

from controller import __version__
from controller.agents.api import AgentsController
from controller.api_errors import (
    buildit_error_handler,
    client_error_handler,
    internal_error_handler,
    validation_handler,
)
from controller.artifacts.api import ArtifactsController
from controller.auth.caller import Caller
from controller.auth.csrf import csrf_middleware
from controller.auth.login import LOGIN_HANDLERS
from controller.auth.oidc_login import OidcLoginController
from controller.auth.permissions import Permission, requires
from controller.auth.policy import Policy, caller_of
from controller.db import ping
from controller.deps import Deps
from controller.errors import BuildItError, Unavailable
from controller.hooks.api import HooksController
from controller.http import WebSecurity
from controller.live.socket import LIVE_HANDLERS
from controller.notify.api import NotificationsController
from controller.orgs.api import ORG_HANDLERS
from controller.pipelines.api import PipelinesController
from controller.repos.api import ReposController
from controller.repos.git_http import GitHttpController
from controller.runs.api import RunsController, TriggersController
from controller.runs.commands import RunCommands
from controller.secrets.api import SecretsController
from controller.web import routes as web_routes


@get("/health", tags=["health"], opt=requires(Permission.PUBLIC))
async def health() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@get("/ready", tags=["health"], opt=requires(Permission.PUBLIC))
async def ready() -> dict[str, str]:
    """Readiness: the database answers."""
    try:
        await ping()
    except Exception as exc:
        raise Unavailable(f"database not reachable: {exc.__class__.__name__}") from None
    return {"status": "ok", "database": "ok"}


def create_app(
    deps: Deps,
    max_body_bytes: int = 1024 * 1024,
    csrf_secret: str | None = None,
    security: WebSecurity | None = None,
) -> Litestar:
    """The HTTP application: REST API, web UI pages and /static, OpenAPI at /schema, health checks.

    Handlers get `deps` (and `commands`, the run operations) by Litestar's dependency injection.
    `security` configures the cross-site and request-hygiene guards (controller.http); they are
    always on.
    """

    def provide_deps(caller: NamedDependency[Caller]) -> Deps:
        return deps.scoped(caller)

    policy = Policy(deps.authenticator, deps.org, deps.tenant, deps.registry.authenticate)

    def provide_caller(scope: Scope) -> Caller:
        return caller_of(scope)

    def provide_commands(deps: NamedDependency[Deps]) -> RunCommands:
        return deps.runs

    handlers: list[Any] = [
        health,
        ready,
        PipelinesController,
        RunsController,
        TriggersController,
        ArtifactsController,
        AgentsController,
        ReposController,
        SecretsController,
        NotificationsController,
        HooksController,
        GitHttpController,
        *web_routes.handlers(),
        *LIVE_HANDLERS,  # /ws: live updates for the UI pages
        *LOGIN_HANDLERS,  # sign in and out, API keys for the CLI
        OidcLoginController,  # sign in with an OpenID provider
        *ORG_HANDLERS,  # members, teams, tenants, grants, agent tokens
    ]
    return Litestar(
        route_handlers=handlers,
        dependencies={
            "deps": Provide(provide_deps, sync_to_thread=False),
            "caller": Provide(provide_caller, sync_to_thread=False),
            "commands": Provide(provide_commands, sync_to_thread=False),
        },
        openapi_config=OpenAPIConfig(
            title="BuildIt",
            version=__version__,
            path="/schema",
            openapi_router=Router("/schema", route_handlers=[], opt=requires(Permission.PUBLIC)),
        ),
        guards=[policy.guard],
        middleware=[csrf_middleware(csrf_secret)],
        exception_handlers={
            ValidationException: validation_handler,
            ClientException: client_error_handler,
            BuildItError: buildit_error_handler,
            Exception: internal_error_handler,
        },
        request_max_body_size=max_body_bytes,
        # Logging is the process's (agent.contract.logformat, set up by the CLI): Litestar's own
        # config would replace the root logger's handlers with another line format.
        logging_config=None,
        template_config=web_routes.templates(),
        plugins=[security or WebSecurity()],
    )
