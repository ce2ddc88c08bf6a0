"""The whole access matrix: every route, page, `/ws` and gRPC method, asked by every kind of caller.

What is checked. The routes come from the live route table (the Litestar app `create_app` builds,
walked like test_route_declarations does) and the gRPC service descriptors, never from a list kept
here: a route added later is in the matrix at once. Each is asked by ten callers: anonymous, a
viewer, a developer, a maintainer and an admin of tenant A, an organization admin (no grants), a
user whose only role is in tenant B (asking for tenant A), a member without any grant, a service
key of tenant A (developer) and an agent's token. What each caller should get is worked out here
from the permission the route declares and a restatement of the issue's role table (`MIN_ROLE`
below, deliberately not imported from the policy code under test): an allowed caller must not be
refused (401/403; any other answer is fine: ids are often dummies), a refused one must get 401
(no or the wrong kind of credential), 403 (role too low) or 404 (a tenant it cannot see). UI pages
must send an anonymous browser to the login page without showing data; `/ws` must refuse the
handshake. Then ids of tenant B's objects asked through tenant A (REST, pages, gRPC, `/ws`)
must answer 404 and change nothing, and tenant A's socket must never carry tenant B's events.

Why it is quick (well under a minute per database). One controller per database (the module's
fixture is parametrized over SQLite and PostgreSQL), users, keys and the agent made once, plain
HTTP over one keep-alive connection and one gRPC channel. The probes change nothing, whoever is
allowed: state-changing requests carry a body that fails validation after the policy point
(`[]` where an object is expected: 400) or name objects that do not exist (404), so an allowed
caller is told "bad request" or "not found" and a refused one "no"; reads use tenant A's real
pipeline and run, so a wrongly open tenant shows up as a 200 rather than hiding behind a 404.
Open routes that check a credential of their own are probed with one (the login form gets a
throwaway user's password and the CSRF pair a browser would send; `Register` the registration
token with an agent version the controller refuses). The cross-tenant writes do carry valid
bodies (a 400 would prove nothing there), and the test then checks tenant B's run is untouched.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
import websockets
import websockets.sync.client
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2
from litestar.handlers import BaseRouteHandler

from agent.contract._gen import buildit_pb2 as pb
from controller import __version__
from controller.app import create_app
from controller.rpc.permissions import method_permission
from controller.server import start
from controller.settings import ControllerSettings
from tests.integration.fleet.harness import Controller
from tests.support.credentials import issue_key

# --- The role table of the issue, restated (the expected results are computed from this alone) ---

ROLE_RANK = {"viewer": 1, "developer": 2, "maintainer": 3, "admin": 4}
#: The lowest tenant role each tenant permission needs (viewer sees; developer runs; maintainer
#: manages pipelines, repositories, secrets, agent tokens, agents; admin grants and audits).
MIN_ROLE = {"read": "viewer", "run": "developer", "manage": "maintainer", "admin": "admin"}
#: Routes anyone may reach: the policy point looks at no credential there.
OPEN = {"public", "webhook"}

TENANT_A = "default/default"
TENANT_B = "default/blue"
PASSWORD = "a long enough password"
DUMMY_ID = "00000000-0000-4000-8000-000000000000"
PIPELINE = 'pipeline "{name}"\nstage "hello" {{ run "echo hi"; }}\n'
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
GRPC_STATUS = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
}
STREAM_WAIT_S = 1.0  # a permitted stream that has nothing to say yet (Lease) ends by this deadline


@dataclass(frozen=True)
class Who:
    """One kind of caller, described by what it is, not by what the policy will make of it."""

    name: str
    kind: str  # "anonymous", "user", "service" (a tenant's service key), "agent"
    role: str | None = None  # its role in tenant A
    org_admin: bool = False
    #: Has a role only in tenant B, and asks for tenant A.
    other_tenant: bool = False
    #: Names tenant A in `X-BuildIt-Tenant` / `x-buildit-tenant` (a member without grants does not:
    #: it has no tenant to name, and is then refused for having none).
    names_tenant: bool = True


CALLERS = (
    Who("anonymous", "anonymous", names_tenant=False),
    Who("viewer", "user", "viewer"),
    Who("developer", "user", "developer"),
    Who("maintainer", "user", "maintainer"),
    Who("tenant-admin", "user", "admin"),
    Who("org-admin", "user", org_admin=True),
    Who("other-tenant", "user", other_tenant=True),
    Who("no-grants", "user", names_tenant=False),
    Who("service-key", "service", "developer"),
    Who("agent", "agent"),
)
CALLER = {who.name: who for who in CALLERS}


@dataclass(frozen=True)
class Expect:
    """Allowed, or refused with one of `refusals` (HTTP statuses)."""

    allowed: bool
    refusals: frozenset[int] = frozenset()


def refused(*statuses: int) -> Expect:
    return Expect(False, frozenset(statuses))


#: Routes about the caller's own person (its personal keys): a service key has none and is told so
#: (403 "only a user has personal API keys") before any id is looked up. Listed rather than
#: derived, so that a new route refusing service keys gets looked at.
PERSON_ONLY = {("DELETE", "/api/v1/apikeys/{key_id:uuid}")}


def expect(
    permission: str | None, who: Who, transport: str = "http", route: tuple[str, str] = ("", "")
) -> Expect:
    """What `who` should get from a route declaring `permission`, from the role table above."""
    if permission is None:
        return refused(403)  # undeclared: closed to everyone
    if permission in OPEN:
        return Expect(True)
    if who.kind == "anonymous":
        return refused(401)
    if permission == "agent":
        # Only an agent's own token; a person's key is the wrong kind of credential (401), and
        # over HTTP the tenant and role checks may answer first (404, 403).
        if who.kind == "agent":
            return Expect(True)
        return refused(401) if transport == "grpc" else refused(401, 403, 404)
    if who.kind == "agent":
        return refused(401)  # an agent token is no API key
    if who.other_tenant:
        return refused(404)  # tenant A does not exist for it
    if permission == "authenticated":
        return refused(403) if who.kind == "service" and route in PERSON_ONLY else Expect(True)
    role = "admin" if who.org_admin else who.role  # org owners and admins are tenant admin everywhere
    if permission == "org_admin":
        return Expect(True) if who.org_admin else refused(403)
    needed = MIN_ROLE[permission]  # a new permission must be added to the table above
    return Expect(True) if ROLE_RANK.get(role or "", 0) >= ROLE_RANK[needed] else refused(403)


# --- The route table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One method of one route, with the permission its handler declares (raw `opt` value)."""

    method: str  # an HTTP method, or "WS"
    path: str
    permission: str | None
    handler: str


def _permission(handler: BaseRouteHandler) -> str | None:
    value = handler.opt.get("permission")
    return str(value) if value is not None else None


async def _collect_routes(tmp_path: Path) -> list[Route]:
    settings = ControllerSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path}/routes.db",
        http_port=0,
        grpc_port=0,
        registration_token="route-table-token",
    )
    running = await start(settings)
    try:
        app = create_app(running.deps)
    finally:
        await running.stop()
    found: list[Route] = []
    for route in app.routes:
        handlers: list[Any] = getattr(route, "route_handlers", None) or [cast(Any, route).route_handler]
        for handler in handlers:
            name = handler.fn.__name__
            methods = sorted(getattr(handler, "http_methods", None) or ["WS"])
            if methods == ["OPTIONS"] and name == "options_handler":
                continue  # Litestar's automatic OPTIONS answer (test_route_declarations covers it)
            found.extend(Route(m, route.path, _permission(handler), name) for m in methods)
    return found


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[Route]:
    """Every route method of the app, from the route table create_app builds."""
    return asyncio.run(_collect_routes(tmp_path_factory.mktemp("routes")))


# --- The world: one controller, tenants A and B, a user per role, a service key, agents -----------


@dataclass
class World:
    controller: Controller
    #: Credential (API key or agent token) per caller name; "" for anonymous.
    credentials: dict[str, str] = field(default_factory=dict)
    pipeline_a: str = ""
    pipeline_b: str = ""
    run_b: dict[str, Any] = field(default_factory=dict)
    agent_b: str = ""  # an agent enrolled with tenant B's registration token
    org_agent: str = ""  # the agent enrolled with the org-wide token
    csrf: dict[str, str] = field(default_factory=dict)  # cookie and header a browser would send

    def headers(self, who: Who, tenant: str = TENANT_A) -> dict[str, str]:
        """`who`'s credential, and the tenant it acts in."""
        headers: dict[str, str] = {}
        if self.credentials[who.name]:
            headers["Authorization"] = f"Bearer {self.credentials[who.name]}"
        if who.names_tenant:
            headers["X-BuildIt-Tenant"] = tenant
        return headers


def _ok(result: tuple[int, Any, dict[str, str]], status: int = 200) -> Any:
    code, body, _ = result
    assert code == status, body
    return body


def _register_agent(controller: Controller, token: str, name: str) -> tuple[str, str]:
    """(agent id, agent token) of a new agent; it offers only `docker`, so it never takes the
    matrix's local stages even while its Lease stream is open."""
    with grpc.insecure_channel(controller.grpc_address) as channel:
        register = channel.unary_unary(
            "/buildit.v1.AgentService/Register",
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        answer = register(
            pb.RegisterRequest(
                registration_token=token, name=name, executors=["docker"], capacity=1, version=__version__
            ),
            timeout=10,
        )
    return answer.agent_id, answer.agent_token


def _csrf_pair(base_url: str) -> dict[str, str]:
    """The CSRF cookie and token of the login page, as a browser holds them."""
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        page = browser.get("/login").text
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page)
        assert token is not None, page
        return {"cookie": f"csrftoken={browser.cookies['csrftoken']}", "token": token.group(1)}


def _build_world(controller: Controller) -> World:
    world = World(controller)
    request = controller.request
    _ok(request("POST", "/api/v1/tenants", {"slug": "blue"}), 201)
    world.pipeline_a = _ok(
        request("POST", "/api/v1/pipelines", {"config": PIPELINE.format(name="red-app")}), 201
    )["id"]
    b = {"X-BuildIt-Tenant": TENANT_B}
    world.pipeline_b = _ok(
        request("POST", "/api/v1/pipelines", {"config": PIPELINE.format(name="blue-app")}, headers=b), 201
    )["id"]
    # Run 1 of each: queued for good (no agent offers the local executor).
    _ok(request("POST", f"/api/v1/pipelines/{world.pipeline_a}/runs", {"branch": "main"}), 201)
    world.run_b = _ok(
        request("POST", f"/api/v1/pipelines/{world.pipeline_b}/runs", {"branch": "main"}, headers=b), 201
    )
    people = {
        "viewer": ("vera", "member", {TENANT_A: "viewer"}),
        "developer": ("dev", "member", {TENANT_A: "developer"}),
        "maintainer": ("max", "member", {TENANT_A: "maintainer"}),
        "tenant-admin": ("tara", "member", {TENANT_A: "admin"}),
        "org-admin": ("olga", "admin", {}),
        "other-tenant": ("bea", "member", {TENANT_B: "admin"}),
        "no-grants": ("nora", "member", {}),
        "login-probe": ("lena", "member", {}),
    }
    for caller, (user, org_role, grants) in people.items():
        _ok(request("POST", "/api/v1/users", {"username": user, "password": PASSWORD, "role": org_role}), 201)
        for tenant, role in grants.items():
            _ok(
                request(
                    "PUT",
                    "/api/v1/grants",
                    {"user": user, "role": role},
                    headers={"X-BuildIt-Tenant": tenant},
                )
            )
        if caller != "login-probe":
            world.credentials[caller] = issue_key(controller.base_url, user, PASSWORD, name="matrix")
    world.credentials["anonymous"] = ""
    world.credentials["service-key"] = _ok(
        request("POST", "/api/v1/apikeys", {"name": "matrix-ci", "service": True, "role": "developer"}), 201
    )["key"]
    world.org_agent, world.credentials["agent"] = _register_agent(
        controller, controller.token, "matrix-agent"
    )
    blue_token = _ok(request("POST", "/api/v1/agent-tokens", {"name": "blue-pool"}, headers=b), 201)["token"]
    world.agent_b, _ = _register_agent(controller, blue_token, "blue-agent")
    world.csrf = _csrf_pair(controller.base_url)
    return world


@pytest.fixture(scope="module")
def world(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A controller on the module's database (SQLite, then PostgreSQL) with the callers made."""
    controller = Controller(tmp_path_factory.mktemp("matrix"), module_database_url).start()
    try:
        yield _build_world(controller)
    finally:
        controller.stop()


# --- HTTP probes ---------------------------------------------------------------------------------

#: Values for path parameters, by name; reads get tenant A's real pipeline and run.
REAL_IDS = {"number": "1", "name": "hello", "file_path": "app.css"}
#: By type, for the rest and for every state-changing request: nothing of that id exists.
DUMMY_BY_TYPE = {"uuid": DUMMY_ID, "int": "999999", "str": "matrix-none", "path": "matrix-none"}
PARAM = re.compile(r"\{(\w+):(\w+)\}")


def fill(path: str, values: dict[str, str]) -> str:
    """A route template with its parameters filled from `values`, else a dummy of its type."""
    return PARAM.sub(lambda m: values.get(m.group(1), DUMMY_BY_TYPE[m.group(2)]), path)


def _no_cookies() -> httpx.Client:
    """Callers are told apart by their header credential only; no cookie is ever kept."""
    jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(timeout=30, follow_redirects=False, cookies=jar)


def http_probe(client: httpx.Client, world: World, route: Route, who: Who) -> httpx.Response:
    """One request of `route` as `who` (see the module docstring for why it is harmless)."""
    base = world.controller.base_url
    headers = world.headers(who)
    if route.method in UNSAFE:
        path = fill(route.path, {})
        body = b"[]"
        headers["Content-Type"] = "application/json"
        if route.permission in OPEN:
            # Open forms keep their CSRF check (login CSRF): send the pair a browser would.
            headers.update({"Cookie": world.csrf["cookie"], "x-csrftoken": world.csrf["token"]})
            if (route.method, route.path) == ("POST", "/login"):
                # The login form checks a password of its own: a real one (a failure would count).
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                body = f"username=lena&password={PASSWORD}&next=/".replace(" ", "+").encode()
        return client.request(route.method, base + path, content=body, headers=headers)
    path = fill(route.path, {**REAL_IDS, "pipeline_id": world.pipeline_a})
    headers["Accept"] = "text/html, application/json;q=0.9"  # as a browser asks: pages may redirect
    return client.request(route.method, base + path, headers=headers)


def ws_probe(world: World, who: Who) -> int:
    """101 when the `/ws` handshake is accepted, else the status it was refused with."""
    url = f"ws://127.0.0.1:{world.controller.http_port}/ws"
    try:
        with websockets.sync.client.connect(url, additional_headers=world.headers(who), open_timeout=10):
            return 101
    except websockets.InvalidStatus as exc:
        return int(exc.response.status_code)


def _is_page(answer: httpx.Response) -> bool:
    return str(answer.headers.get("content-type", "")).startswith("text/html")


def check(route: Route, who: Who, status: int, answer: httpx.Response | None, page: bool) -> str | None:
    """A mismatch between the answer and the expectation, described; None when it matches."""
    want = expect(route.permission, who, route=(route.method, route.path))
    if status >= 500:
        return f"answered {status}"
    if want.allowed:
        return f"refused with {status}, should be allowed" if status in (401, 403) else None
    if route.method == "WS":
        # uvicorn turns every handshake refused before accept into 403.
        return None if status == 403 else f"handshake answered {status}, should be refused"
    location = answer.headers.get("location", "") if answer is not None else ""
    to_login = status == 303 and location.startswith("/login?next=")
    if to_login and "red-app" in (answer.text if answer is not None else ""):
        return "the redirect to the login page shows tenant data"
    if page and 401 in want.refusals:
        # A browser without a valid session is sent to the login page rather than told 401.
        return None if to_login else f"answered {status} {location!r}, should redirect to the login page"
    if to_login and 401 in want.refusals and route.method == "GET":
        return None  # a browser-style GET of a non-page (an htmx fragment): the login page is a refusal too
    if status not in want.refusals:
        return f"answered {status}, should be refused with {sorted(want.refusals)}"
    return None


def test_the_matrix_walks_the_whole_app(routes: list[Route]) -> None:
    """The route table is the app's: REST, pages, webhooks, Git, login, the socket."""
    paths = {route.path for route in routes}
    assert len(routes) > 60
    assert {"/ws", "/", "/pipelines", "/api/v1/pipelines", "/api/v1/grants", "/hooks/github"} <= paths
    assert {r.permission for r in routes} >= {*OPEN, "authenticated", "agent", *MIN_ROLE, "org_admin"}


#: The issue's role table by what a route is about (the last fixed segment of its path): the
#: permission to see it and the permission to change it (None: no such door). The matrix above
#: checks that each route is enforced as declared; this checks the declarations themselves, so a
#: route declared too open or too closed is caught too. Routes about other nouns are not judged.
ROLE_TABLE: dict[str, tuple[str | None, str | None]] = {
    # viewer sees pipelines, runs, logs, artifacts, agents (and the pages and socket showing them)
    "": ("read", None),  # the dashboard
    "pipelines": ("read", "manage"),
    "runs": ("read", "run"),  # developer triggers
    "stages": ("read", None),
    "log": ("read", None),
    "lines": ("read", None),
    "search": ("read", None),
    "artifacts": ("read", None),
    "agents": ("read", None),
    "ws": ("read", None),
    # developer: cancel, retry a stage, re-run
    "cancel": (None, "run"),
    "retry": (None, "run"),
    "rerun": (None, "run"),
    # maintainer: repositories, secrets, agent registration tokens, draining agents
    "repos": ("read", "manage"),
    "secrets": ("manage", "manage"),
    "notifications": ("manage", "manage"),  # outgoing webhooks: their URLs can be credentials
    "deliveries": ("manage", None),
    "agent-tokens": ("manage", "manage"),
    "drain": (None, "manage"),
    "resume": (None, "manage"),
    # admin: grants, the audit log
    "grants": ("admin", "admin"),
    "audit": ("admin", None),
    # org owner/admin: members, teams, tenants
    "users": ("org_admin", "org_admin"),
    "teams": ("org_admin", "org_admin"),
    "members": ("org_admin", "org_admin"),  # the members page; PUT/DELETE of team members
    "tenants": ("authenticated", "org_admin"),  # anyone lists the tenants they have a role in
    # one's own account
    "me": ("authenticated", None),
    "password": (None, "authenticated"),
    "apikeys": ("authenticated", "authenticated"),
}


def _noun(path: str) -> str:
    fixed = [part for part in path.split("/") if part and not part.startswith("{")]
    return fixed[-1] if fixed else ""


def test_declarations_follow_the_issue_role_table(routes: list[Route]) -> None:
    judged = 0
    wrong: list[str] = []
    for route in routes:
        noun = _noun(route.path)
        if noun not in ROLE_TABLE or route.path.startswith(("/hooks/", "/git/")):
            continue
        see, change = ROLE_TABLE[noun]
        wanted = change if route.method in UNSAFE else see
        judged += 1
        if route.permission != wanted:
            wrong.append(
                f"{route.method} {route.path}: declares {route.permission}, the role table says {wanted}"
            )
    assert judged > 40
    assert not wrong, "\n".join(wrong)


def test_a_member_without_grants_sees_no_tenant(world: World) -> None:
    nora = CALLER["no-grants"]
    with _no_cookies() as client:
        base = world.controller.base_url
        assert client.get(f"{base}/api/v1/tenants", headers=world.headers(nora)).json() == {"tenants": []}
        me = client.get(f"{base}/api/v1/me", headers=world.headers(nora)).json()
        assert (me["tenant"], me["role"], me["tenants"]) == (None, None, [])
        for path in ("/api/v1/pipelines", "/api/v1/agents", "/"):
            answer = client.get(base + path, headers=world.headers(nora))
            assert answer.status_code == 403 and "red-app" not in answer.text, (path, answer.text)


def test_every_route_answers_each_caller_as_its_role_allows(world: World, routes: list[Route]) -> None:
    mismatches: list[str] = []
    with _no_cookies() as client:
        for route in routes:
            answers: dict[str, tuple[int, httpx.Response | None]] = {}
            for who in CALLERS:
                if route.method == "WS":
                    answers[who.name] = (ws_probe(world, who), None)
                else:
                    answer = http_probe(client, world, route, who)
                    answers[who.name] = (answer.status_code, answer)
            # A page is what the app serves an allowed browser as HTML (the org admin may read all).
            admin_answer = answers["org-admin"][1]
            page = route.method == "GET" and admin_answer is not None and _is_page(admin_answer)
            for who in CALLERS:
                status, reply = answers[who.name]
                problem = check(route, who, status, reply, page)
                if problem:
                    mismatches.append(
                        f"{route.method} {route.path} [{route.permission}] as {who.name}: {problem}"
                    )
    assert not mismatches, "\n".join(mismatches)


def test_pages_show_tenant_a_its_own_data_only(world: World) -> None:
    with _no_cookies() as client:
        viewer = world.headers(CALLER["viewer"]) | {"Accept": "text/html"}
        page = client.get(f"{world.controller.base_url}/pipelines", headers=viewer)
        assert page.status_code == 200 and "red-app" in page.text and "blue-app" not in page.text
        anonymous = client.get(f"{world.controller.base_url}/pipelines", headers={"Accept": "text/html"})
        assert anonymous.status_code == 303 and "red-app" not in anonymous.text


# --- gRPC ----------------------------------------------------------------------------------------

METHODS = [
    (f"/{service.full_name}/{method.name}", method)
    for descriptor in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR)
    for service in descriptor.services_by_name.values()
    for method in service.methods
]


def _grpc_permission(path: str) -> str | None:
    permission = method_permission(path)
    return str(permission) if permission is not None else None


def grpc_probe(channel: grpc.Channel, world: World, path: str, method: Any, who: Who) -> grpc.StatusCode:
    """One call of `method` as `who` with an empty request (Register: a refused agent version)."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = request_class()
    if path == "/buildit.v1.AgentService/Register":
        request = pb.RegisterRequest(
            registration_token=world.controller.token, name="never", executors=["docker"], capacity=1
        )
        request.version = "0.0.0"  # refused after the token is checked: nothing is enrolled
    metadata = [(k.lower(), v) for k, v in world.headers(who).items()]
    kwargs: dict[str, Any] = {"metadata": metadata}
    serialize, parse = request_class.SerializeToString, response_class.FromString
    try:
        if method.client_streaming and method.server_streaming:
            call = channel.stream_stream(path, serialize, parse)(iter(()), timeout=STREAM_WAIT_S, **kwargs)
            list(call)
        elif method.client_streaming:
            channel.stream_unary(path, serialize, parse)(iter(()), timeout=10, **kwargs)
        elif method.server_streaming:
            call = channel.unary_stream(path, serialize, parse)(request, timeout=STREAM_WAIT_S, **kwargs)
            next(iter(call), None)
            call.cancel()
        else:
            channel.unary_unary(path, serialize, parse)(request, timeout=10, **kwargs)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return grpc.StatusCode.OK if code is grpc.StatusCode.CANCELLED else code
    return grpc.StatusCode.OK


def test_every_grpc_method_answers_each_caller_as_its_role_allows(world: World) -> None:
    assert len(METHODS) > 15
    mismatches: list[str] = []
    with grpc.insecure_channel(world.controller.grpc_address) as channel:
        for path, method in METHODS:
            permission = _grpc_permission(path)
            for who in CALLERS:
                code = grpc_probe(channel, world, path, method, who)
                want = expect(permission, who, transport="grpc")
                refusal_codes = {GRPC_STATUS[s] for s in want.refusals}
                if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    problem: str | None = f"answered {code.name}"
                elif want.allowed:
                    refused_now = code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                    problem = f"refused with {code.name}, should be allowed" if refused_now else None
                else:
                    names = sorted(c.name for c in refusal_codes)
                    problem = None if code in refusal_codes else f"answered {code.name}, should be {names}"
                if problem:
                    mismatches.append(f"{path} [{permission}] as {who.name}: {problem}")
    assert not mismatches, "\n".join(mismatches)


# --- Across tenants ------------------------------------------------------------------------------


def _as_b(world: World, path: str) -> Any:
    """GET `path` as tenant B's admin, in tenant B: what B sees of its own objects."""
    headers = {"X-BuildIt-Tenant": TENANT_B}
    return _ok(world.controller.request("GET", path, key=world.credentials["other-tenant"], headers=headers))


def _b_state(world: World) -> Any:
    """Tenant B's runs, its run's stages and its agents' drain marks: what a leak would change."""
    run = _as_b(world, f"/api/v1/pipelines/{world.pipeline_b}/runs/{world.run_b['number']}")
    runs = _as_b(world, f"/api/v1/pipelines/{world.pipeline_b}/runs")["runs"]
    agents = _as_b(world, "/api/v1/agents")["agents"]
    return (
        (run["status"], run["stages"]),
        sorted(r["number"] for r in runs),
        sorted((a["name"], a["drain_requested_by"]) for a in agents),
    )


def test_tenant_b_ids_through_tenant_a_answer_404_and_change_nothing(
    world: World, routes: list[Route]
) -> None:
    """Every route taking a pipeline id, given tenant B's pipeline and run by a tenant A caller
    who could act on its own (and the agents and runs of B by other doors), answers 404."""
    before = _b_state(world)
    b_ids = {"pipeline_id": world.pipeline_b, "number": str(world.run_b["number"]), "name": "hello"}
    pipeline_routes = [r for r in routes if "{pipeline_id:uuid}" in r.path]
    assert len(pipeline_routes) > 8
    mismatches: list[str] = []
    with _no_cookies() as client:
        for route in pipeline_routes:
            for who in (CALLER["viewer"], CALLER["tenant-admin"]):  # a viewer and an admin of tenant A
                if not expect(route.permission, who).allowed:
                    continue
                url = world.controller.base_url + fill(route.path, b_ids)
                headers = world.headers(who) | {"Content-Type": "application/json"}
                body = b"{}" if route.method in UNSAFE else None
                answer = client.request(route.method, url, content=body, headers=headers)
                if answer.status_code != 404:
                    mismatches.append(f"{route.method} {route.path} as {who.name}: {answer.status_code}")
        developer = world.headers(CALLER["developer"]) | {"Content-Type": "application/json"}
        by_name = client.post(
            f"{world.controller.base_url}/api/v1/runs", json={"target": "blue-app"}, headers=developer
        )
        if by_name.status_code != 404:
            mismatches.append(f"POST /api/v1/runs naming blue-app: {by_name.status_code}")
        maintainer = world.headers(CALLER["maintainer"])
        for agent, status in ((world.agent_b, 404), (world.org_agent, 403)):
            # B's agent is invisible in A; the org-wide pool is drained by org admins only.
            answer = client.post(
                f"{world.controller.base_url}/api/v1/agents/{agent}/drain", headers=maintainer
            )
            if answer.status_code != status:
                mismatches.append(
                    f"drain agent {agent} as maintainer of A: {answer.status_code} not {status}"
                )
    with world.controller.channel(world.credentials["tenant-admin"], TENANT_A) as channel:
        run_id = world.run_b["id"]
        for name, request, response in (
            ("GetRun", pb.GetRunRequest(run_id=run_id), pb.GetRunResponse),
            ("CancelRun", pb.CancelRunRequest(run_id=run_id), pb.CancelRunResponse),
            ("RerunRun", pb.RerunRunRequest(run_id=run_id), pb.RerunRunResponse),
            ("RetryStage", pb.RetryStageRequest(run_id=run_id, stage_name="hello"), pb.RetryStageResponse),
            ("TriggerRun", pb.TriggerRunRequest(repository="blue-app"), pb.TriggerRunResponse),
            ("DrainAgent", pb.DrainAgentRequest(agent_id=world.agent_b), pb.DrainAgentResponse),
        ):
            call = channel.unary_unary(
                f"/buildit.v1.BuildItService/{name}", type(request).SerializeToString, response.FromString
            )
            with pytest.raises(grpc.RpcError) as refused_call:
                call(request, timeout=10)
            if refused_call.value.code() is not grpc.StatusCode.NOT_FOUND:
                mismatches.append(f"gRPC {name} of B's object: {refused_call.value.code().name}")
    assert not mismatches, "\n".join(mismatches)
    assert _b_state(world) == before


# --- /ws -----------------------------------------------------------------------------------------


async def _messages_until(ws: Any, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(15):  # the awaited message comes in milliseconds
        while not seen or not done(seen[-1]):
            seen.append(json.loads(await ws.recv()))
    return seen


async def test_a_tenant_a_socket_never_carries_tenant_b_events(world: World) -> None:
    url = f"ws://127.0.0.1:{world.controller.http_port}/ws"
    controller = world.controller
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url):
            pass
    viewer, bea = CALLER["viewer"], CALLER["other-tenant"]
    b_headers = {"Authorization": f"Bearer {world.credentials[bea.name]}", "X-BuildIt-Tenant": TENANT_B}
    async with (
        websockets.connect(url, additional_headers=world.headers(viewer)) as ws_a,
        websockets.connect(url, additional_headers=b_headers) as ws_b,
    ):
        # Runs, then agents: the agents' answer (every agent the tenant sees, by name) also says
        # the runs watch is in place. A sees the org-wide pool, not B's own agent.
        agents: dict[str, list[dict[str, Any]]] = {}
        for tenant, ws in (("A", ws_a), ("B", ws_b)):
            await ws.send(json.dumps({"op": "watch", "topic": "runs"}))
            await ws.send(json.dumps({"op": "watch", "topic": "agents"}))
            agents[tenant] = await _messages_until(
                ws, lambda m: m.get("type") == "agent" and m["agent"]["name"] == "matrix-agent"
            )
        assert [m["agent"]["name"] for m in agents["A"]] == ["matrix-agent"]
        assert [m["agent"]["name"] for m in agents["B"]] == ["blue-agent", "matrix-agent"]
        # B's run, then A's: A's socket must get A's and nothing of B's in between.
        b_run = await asyncio.to_thread(
            controller.request,
            "POST",
            f"/api/v1/pipelines/{world.pipeline_b}/runs",
            {"branch": "ws"},
            headers={"X-BuildIt-Tenant": TENANT_B},
        )
        a_run = await asyncio.to_thread(
            controller.request, "POST", f"/api/v1/pipelines/{world.pipeline_a}/runs", {"branch": "ws"}
        )
        b_id, a_id = _ok(b_run, 201)["id"], _ok(a_run, 201)["id"]

        def run_of(run_id: str) -> Callable[[dict[str, Any]], bool]:
            return lambda m: m.get("type") == "run" and m["run"]["id"] == run_id

        seen_a = await _messages_until(ws_a, run_of(a_id))
        seen_b = await _messages_until(ws_b, run_of(b_id))
        assert b_id not in json.dumps(seen_a) and world.pipeline_b not in json.dumps(seen_a)
        assert a_id not in json.dumps(seen_b)
        # Asking for B's run or its log by id answers like a run that does not exist.
        await ws_a.send(json.dumps({"op": "watch", "topic": "run", "run_id": b_id}))
        await ws_a.send(
            json.dumps({"op": "log", "id": "t", "run_id": b_id, "stage": "hello", "attempt": 1, "offset": 0})
        )
        errors = await _messages_until(ws_a, lambda m: m.get("type") == "error" and '"log"' in m["message"])
        problems = [m["message"] for m in errors if m.get("type") == "error"]
        assert len(problems) == 2 and all("no run" in p for p in problems), errors
        assert b_id not in json.dumps([m for m in errors if m.get("type") != "error"])
