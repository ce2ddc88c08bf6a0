"""Who may do what, through a real controller: roles per tenant, tenant isolation, keys, sign-in limits.

Users and grants are made through the REST API as an organization admin would; every request is a
real HTTP request (or gRPC call) with the user's own API key.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Controller
from tests.support.credentials import issue_key

PIPELINE = 'pipeline "{name}"\nstage "hello" {{ run "echo hi"; }}\n'
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp_path = tmp_path_factory.mktemp("access")
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}").start()
    try:
        yield controller
    finally:
        controller.stop()


def ok(result: tuple[int, Any, dict[str, str]], status: int = 200) -> Any:
    code, body, _ = result
    assert code == status, body
    return body


def user_key(controller: Controller, name: str, grants: dict[str, str]) -> str:
    """A member `name` with `grants` ({tenant path: role}) and an API key of theirs."""
    ok(controller.request("POST", "/api/v1/users", {"username": name, "password": PASSWORD}), 201)
    for tenant, role in grants.items():
        ok(
            controller.request(
                "PUT", "/api/v1/grants", {"user": name, "role": role}, headers={"X-BuildIt-Tenant": tenant}
            )
        )
    return issue_key(controller.base_url, name, PASSWORD)


@pytest.fixture(scope="module")
def world(controller: Controller) -> dict[str, Any]:
    ok(controller.request("POST", "/api/v1/tenants", {"slug": "blue"}), 201)
    in_default = ok(
        controller.request("POST", "/api/v1/pipelines", {"config": PIPELINE.format(name="red-app")}), 201
    )
    in_blue = ok(
        controller.request(
            "POST",
            "/api/v1/pipelines",
            {"config": PIPELINE.format(name="blue-app")},
            headers={"X-BuildIt-Tenant": "default/blue"},
        ),
        201,
    )
    return {
        "red": in_default["id"],
        "blue_pipeline": in_blue["id"],
        "viewer": user_key(controller, "vera", {"default/default": "viewer"}),
        "developer": user_key(controller, "dev", {"default/default": "developer"}),
        "maintainer": user_key(controller, "max", {"default/default": "maintainer"}),
        "blue": user_key(controller, "bea", {"default/blue": "admin"}),
        "nobody": user_key(controller, "nora", {}),
    }


def test_anonymous_callers_reach_only_the_open_routes(controller: Controller) -> None:
    for path in ("/api/v1/pipelines", "/api/v1/agents", "/api/v1/repos", "/api/v1/audit", "/api/v1/me"):
        status, body, _ = controller.request("GET", path, key="")
        assert status == 401, (path, body)
        assert "sign in" in body["detail"]
    assert ok(controller.request("GET", "/health", key="")) == {"status": "ok"}
    status, _, _ = controller.request("GET", "/", key="", headers={"Accept": "text/html"})
    assert status == 200  # urllib followed the redirect to the login page
    assert ok(controller.request("GET", "/login", key="")).startswith("<!doctype html>")


def test_each_role_can_do_what_it_holds_and_nothing_more(
    controller: Controller, world: dict[str, Any]
) -> None:
    red = world["red"]
    for role in ("viewer", "developer", "maintainer"):
        ok(controller.request("GET", f"/api/v1/pipelines/{red}", key=world[role]))
    trigger = ("POST", f"/api/v1/pipelines/{red}/runs", {"branch": "main"})
    assert controller.request(*trigger, key=world["viewer"])[0] == 403
    ok(controller.request(*trigger, key=world["developer"]), 201)
    create = ("POST", "/api/v1/pipelines", {"config": PIPELINE.format(name="more")})
    assert controller.request(*create, key=world["developer"])[0] == 403
    ok(controller.request(*create, key=world["maintainer"]), 201)
    assert controller.request("GET", "/api/v1/grants", key=world["maintainer"])[0] == 403
    assert controller.request("GET", "/api/v1/audit", key=world["maintainer"])[0] == 403
    assert controller.request("POST", "/api/v1/users", {"username": "x"}, key=world["maintainer"])[0] == 403
    status, body, _ = controller.request("GET", "/api/v1/pipelines", key=world["nobody"])
    assert status == 403 and "no role in any tenant" in body["detail"]


def test_a_tenant_sees_nothing_of_another(controller: Controller, world: dict[str, Any]) -> None:
    blue_names = [
        p["name"] for p in ok(controller.request("GET", "/api/v1/pipelines", key=world["blue"]))["pipelines"]
    ]
    assert blue_names == ["blue-app"]
    # An id of the other tenant answers exactly like an id that does not exist.
    missing = controller.request(
        "GET", "/api/v1/pipelines/00000000-0000-0000-0000-000000000000", key=world["blue"]
    )
    foreign = controller.request("GET", f"/api/v1/pipelines/{world['red']}", key=world["blue"])
    assert foreign[0] == missing[0] == 404
    assert (
        controller.request("POST", f"/api/v1/pipelines/{world['red']}/runs", {}, key=world["blue"])[0] == 404
    )
    # Asking for a tenant one has no role in is the same 404 as a tenant that does not exist.
    status, body, _ = controller.request(
        "GET", "/api/v1/pipelines", key=world["developer"], headers={"X-BuildIt-Tenant": "default/blue"}
    )
    assert status == 404, body
    red_names = {
        p["name"]
        for p in ok(controller.request("GET", "/api/v1/pipelines", key=world["developer"]))["pipelines"]
    }
    assert "blue-app" not in red_names and "red-app" in red_names


def test_grpc_checks_the_same_permissions(controller: Controller, world: dict[str, Any]) -> None:
    with controller.channel(world["viewer"]) as channel:
        api = pb_grpc.BuildItServiceStub(channel)
        assert api.ListRuns(pb.ListRunsRequest(), timeout=10) is not None
        with pytest.raises(grpc.RpcError) as refused:
            api.TriggerRun(pb.TriggerRunRequest(repository="red-app"), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with grpc.insecure_channel(controller.grpc_address) as anonymous:
        with pytest.raises(grpc.RpcError) as no_key:
            pb_grpc.BuildItServiceStub(anonymous).ListRuns(pb.ListRunsRequest(), timeout=10)
        assert no_key.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with controller.channel(world["blue"]) as channel:
        with pytest.raises(grpc.RpcError) as hidden:
            pb_grpc.BuildItServiceStub(channel).TriggerRun(
                pb.TriggerRunRequest(repository="red-app"), timeout=10
            )
        assert hidden.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_revoked_key_stops_working_at_once(controller: Controller, world: dict[str, Any]) -> None:
    made = ok(
        controller.request("POST", "/api/v1/apikeys", {"name": "short-lived"}, key=world["developer"]), 201
    )
    ok(controller.request("GET", "/api/v1/me", key=made["key"]))
    listed = ok(controller.request("GET", "/api/v1/apikeys", key=world["developer"]))["keys"]
    assert made["key"] not in str(listed) and any(k["prefix"] == made["prefix"] for k in listed)
    status, _, _ = controller.request("DELETE", f"/api/v1/apikeys/{made['id']}", key=world["developer"])
    assert status == 204
    assert controller.request("GET", "/api/v1/me", key=made["key"])[0] == 401


def test_a_service_key_has_exactly_its_role(controller: Controller, world: dict[str, Any]) -> None:
    made = ok(
        controller.request("POST", "/api/v1/apikeys", {"name": "ci", "service": True, "role": "viewer"}), 201
    )
    ok(controller.request("GET", "/api/v1/pipelines", key=made["key"]))
    assert controller.request("POST", f"/api/v1/pipelines/{world['red']}/runs", {}, key=made["key"])[0] == 403
    # Only tenant admins make service keys.
    refused = controller.request(
        "POST", "/api/v1/apikeys", {"name": "x", "service": True, "role": "admin"}, key=world["maintainer"]
    )
    assert refused[0] == 403


def test_sessions_need_the_csrf_token_for_writes(controller: Controller, tmp_path: Path) -> None:
    import http.cookiejar
    import re
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{controller.base_url}/login").read().decode()
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    from urllib.parse import urlencode

    form = urlencode(
        {"_csrf_token": token, "username": "vera", "password": PASSWORD, "next": "/agents"}
    ).encode()
    opener.open(urllib.request.Request(f"{controller.base_url}/login", data=form))
    assert any(c.name == "buildit_session" for c in jar)
    write = f"{controller.base_url}/api/v1/pipelines"
    body = b'{"config": "pipeline \\"csrf\\"\\nstage \\"a\\" { run \\"true\\"; }"}'
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(urllib.request.Request(write, data=body, headers={"Content-Type": "application/json"}))
    assert refused.value.code == 403 and b"CSRF" in refused.value.read()
    with pytest.raises(urllib.error.HTTPError) as role:
        opener.open(
            urllib.request.Request(
                write, data=body, headers={"Content-Type": "application/json", "x-csrftoken": token}
            )
        )
    assert role.value.code == 403 and b"maintainer" in role.value.read()  # CSRF passed; vera is a viewer


def test_failed_sign_ins_are_slowed_down_and_never_say_which_half_was_wrong(controller: Controller) -> None:
    def sign_in(user: str, password: str) -> tuple[int, Any, dict[str, str]]:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return controller.request(
            "POST", "/api/v1/auth/token", {"name": "t"}, key="", headers={"Authorization": f"Basic {basic}"}
        )

    assert sign_in("ghost", "whatever")[1]["detail"] == sign_in("admin", "wrong")[1]["detail"]
    answers = [sign_in("admin", "wrong") for _ in range(6)]
    assert [a[0] for a in answers[:3]] == [401, 401, 401]
    assert answers[-1][0] == 429
    assert int(answers[-1][2]["retry-after"]) >= 1
    events = ok(controller.request("GET", "/api/v1/audit?limit=500"))["events"]
    assert any(e["action"] == "login.failed" and e["target"] == "admin" for e in events)
    assert any(e["action"] == "run.trigger" for e in events)
    assert any(e["action"] == "pipeline.create" and e["target"] == "red-app" for e in events)
    created = [e for e in events if e["action"] == "user.create"]
    assert created and all(e["tenant"] is None for e in created)  # organization-level: no tenant
