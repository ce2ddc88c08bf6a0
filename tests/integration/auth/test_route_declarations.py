"""Every route, page, socket and gRPC method declares the permission it needs; undeclared ones stay shut.

A route added later without a declaration fails here (and the policy point refuses it at run time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from litestar import get
from litestar.testing import AsyncTestClient

from agent.contract._gen import buildit_pb2 as pb
from controller.app import create_app
from controller.auth.permissions import Permission
from controller.auth.policy import declared
from controller.rpc.permissions import method_permission
from controller.server import Running, start
from controller.settings import ControllerSettings

#: What anyone may reach without signing in (besides forge webhooks, which are signed).
PUBLIC_PATHS = {
    "/health",
    "/ready",
    "/login",
    "/login/oidc",
    "/login/oidc/callback",
    "/api/v1/auth/token",
    "/static/{file_path:path}",
}


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = ControllerSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path}/buildit.db",
        http_port=0,
        grpc_port=0,
        registration_token="route-walk-token",
    )
    running = await start(settings)
    try:
        yield running
    finally:
        await running.stop()


def _handlers(app: Any) -> list[tuple[str, Any]]:
    found = []
    for route in app.routes:
        handlers = getattr(route, "route_handlers", None) or [route.route_handler]
        for handler in handlers:
            if (
                getattr(handler, "http_methods", None) == {"OPTIONS"}
                and handler.fn.__name__ == "options_handler"
            ):
                continue  # Litestar's automatic OPTIONS answer (no CORS here: refused like any undeclared)
            found.append((route.path, handler))
    return found


async def test_every_http_route_declares_a_permission(running: Running) -> None:
    app = create_app(running.deps)
    handlers = _handlers(app)
    assert len(handlers) > 40  # the whole app, not an empty table
    undeclared = [path for path, handler in handlers if declared(handler) is None]
    assert undeclared == []
    public = {
        path
        for path, handler in handlers
        if declared(handler) is Permission.PUBLIC and not path.startswith("/schema")
    }
    assert public == PUBLIC_PATHS
    webhooks = {path for path, handler in handlers if declared(handler) is Permission.WEBHOOK}
    assert webhooks and all(path.startswith("/hooks/") for path in webhooks)


async def test_an_undeclared_route_is_refused(running: Running) -> None:
    @get("/undeclared")
    async def undeclared() -> str:
        return "should never be served"

    app = create_app(running.deps)
    app.register(undeclared)
    async with AsyncTestClient(app) as client:
        response = await client.get("/undeclared")
    assert response.status_code == 403
    assert "declares no permission" in response.json()["detail"]


def test_every_grpc_method_declares_a_permission() -> None:
    methods = [
        f"/{service.full_name}/{method.name}"
        for service in pb.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]
    assert len(methods) > 15
    assert [m for m in methods if method_permission(m) is None] == []
    health = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert method_permission(f"/{health.full_name}/Check") is Permission.PUBLIC
    assert method_permission("/buildit.v1.BuildItService/NotAMethod") is None
