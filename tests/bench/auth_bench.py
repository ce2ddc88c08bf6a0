"""`auth_overhead`: what authentication and the policy point add to one request (target ≤ 0.3 ms).

In one process, one controller (`controller.server.start`, SQLite) and two Litestar apps built by
`create_app` over it: the real one, and one whose policy point is replaced by a guard that hands
every request the caller the real one made for the same key (so the handler does the same work
with the same tenant). Both serve `GET /api/v1/pipelines` (the tenant's 20 pipelines) with the
admin's API key as `Authorization: Bearer`, called through their ASGI interface (no sockets, no
HTTP client: their costs would be the same on both sides and only add noise). The difference of
the two per-request times is the figure: reading the header, hashing the key, the cached key,
roles and tenants, choosing the tenant, building the caller and checking the permission.

Batches of 100 requests alternate between the two apps (each side first in every other pair), so
drifting machine load hits both alike; the figure is the median of the paired differences of batch
means, the per-side medians are reported too, all after warm-up batches (the caches warm there, as
they are after any request in a running controller). `guard_us` times `Policy.guard` alone on the
same request, which says where a missed target's time goes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from typing import Any
from unittest import mock

from litestar import Litestar
from litestar.connection import ASGIConnection

from controller.app import create_app
from controller.auth.caller import Caller
from controller.auth.policy import STATE_KEY, Policy
from controller.server import start
from controller.settings import ControllerSettings
from tests.bench.common import BenchError, context_fields, log, scratch_dir

TARGET_MS = 0.3
PATH = "/api/v1/pipelines"
PIPELINES = 20
WARMUP_BATCHES = 4
#: Requests per batch: short batches pair up closely in time, so load drift cancels out.
BATCH = 100


class _Bypassed(Policy):
    """The policy point with its work taken out: the first request is checked for real, every later
    one gets that request's caller as is."""

    fixed: Caller | None = None
    #: How many requests the bypassed apps checked for real (1 each: else nothing was bypassed).
    real_checks = 0

    async def guard(self, connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        if self.fixed is None:
            await super().guard(connection, handler)
            self.fixed = connection.scope["state"][STATE_KEY]
            _Bypassed.real_checks += 1
        connection.scope.setdefault("state", {})[STATE_KEY] = self.fixed


def _scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1", **headers}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def _call(app: Litestar, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    """One request through the app's ASGI interface: (status, body bytes)."""
    sent: list[dict[str, Any]] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(method, path, headers), receive, send)  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, payload


async def _batch(app: Litestar, headers: dict[str, str], size: int) -> float:
    """Seconds per request over `size` sequential reads."""
    started = time.perf_counter()
    for _ in range(size):
        status, _ = await _call(app, "GET", PATH, headers)
        if status != 200:
            raise BenchError(f"GET {PATH} answered {status}")
    return (time.perf_counter() - started) / size


async def _guard_seconds(app: Litestar, policy: Policy, headers: dict[str, str], calls: int) -> float:
    """Seconds per `Policy.guard` call on the same request, caches warm."""
    handler = next(
        h
        for route in app.routes
        if route.path == PATH
        for h in getattr(route, "route_handlers", [])
        if "GET" in getattr(h, "http_methods", ())
    )
    scope = _scope("GET", PATH, headers)
    started = time.perf_counter()
    for _ in range(calls):
        scope["state"] = {}
        await policy.guard(ASGIConnection(scope), handler)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / calls


async def _measure(batch: int, batches: int) -> dict[str, Any]:
    with scratch_dir("buildit-bench-auth-") as tmp:
        settings = ControllerSettings(
            data_dir=tmp / "data",
            database_url=f"sqlite:///{tmp}/buildit.db",
            http_port=0,
            grpc_port=0,
            registration_token="bench-registration-token",
        )
        running = await start(settings)
        try:
            real = create_app(running.deps)
            _Bypassed.real_checks = 0
            with mock.patch("controller.app.Policy", _Bypassed):
                bypassed = create_app(running.deps)
            password = (
                running.admin_password or (settings.data_dir / "initial-admin-password").read_text().strip()
            )
            basic = base64.b64encode(f"admin:{password}".encode()).decode()
            json_headers = {"Content-Type": "application/json"}
            status, body = await _call(
                real, "POST", "/api/v1/auth/token", {"Authorization": f"Basic {basic}", **json_headers}, b"{}"
            )
            if status != 201:
                raise BenchError(f"could not get an API key: {status} {body[:200]!r}")
            headers = {"Authorization": f"Bearer {json.loads(body)['key']}"}
            for i in range(PIPELINES):
                config = json.dumps({"config": f'pipeline "bench-{i}"\nstage "a" {{ run "true"; }}\n'})
                status, body = await _call(real, "POST", PATH, {**headers, **json_headers}, config.encode())
                if status != 201:
                    raise BenchError(f"could not create a pipeline: {status} {body[:200]!r}")
            samples: dict[str, list[float]] = {"keyed": [], "bypassed": []}
            sides = [("keyed", real), ("bypassed", bypassed)]
            for i in range(WARMUP_BATCHES + batches):
                for name, app in sides if i % 2 else sides[::-1]:  # neither side always goes first
                    seconds = await _batch(app, headers, batch)
                    if i >= WARMUP_BATCHES:
                        samples[name].append(seconds)
            log(
                "auth_overhead: "
                + ", ".join(f"{n} {statistics.median(s) * 1e6:.1f} µs/request" for n, s in samples.items())
            )
            if _Bypassed.real_checks != 1:
                raise BenchError(f"the bypassed app checked {_Bypassed.real_checks} requests, not 1")
            policy = Policy(running.deps.authenticator, running.deps.org, running.deps.tenant)
            guard_s = await _guard_seconds(real, policy, headers, batch * 5)
        finally:
            await running.stop()
    keyed, bypass = statistics.median(samples["keyed"]), statistics.median(samples["bypassed"])
    # The median of the paired differences: each pair ran back to back, under the same load.
    overhead_ms = statistics.median(k - b for k, b in zip(samples["keyed"], samples["bypassed"], strict=True))
    overhead_ms *= 1000
    return {
        "bench": "auth_overhead",
        "request": f"GET {PATH} ({PIPELINES} pipelines), API key, in-process ASGI",
        "requests_per_side": batch * batches,
        "keyed_ms": round(keyed * 1000, 4),
        "bypassed_ms": round(bypass * 1000, 4),
        "overhead_ms": round(overhead_ms, 4),
        "guard_us": round(guard_s * 1e6, 1),
        "target_ms": TARGET_MS,
        "meets_target": overhead_ms <= TARGET_MS,
        **context_fields(),
    }


def bench_auth_overhead(requests: int, batch: int = BATCH) -> dict[str, Any]:
    """The `auth_overhead` figure: `requests` per side, in alternating batches of `batch`."""
    return asyncio.run(_measure(batch, max(1, requests // batch)))
