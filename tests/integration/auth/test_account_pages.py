"""The account pages and the REST operations they added, through a real controller.

Pages answer the HTML "Not allowed" page (403) to a role that lacks their permission, and never
show a secret's value; disabling a member stops their keys at once; team members are added and
removed one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet.harness import Controller
from tests.support.credentials import issue_key

PASSWORD = "a long enough password"
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp_path: Path = tmp_path_factory.mktemp("account-pages")
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}").start()
    try:
        yield controller
    finally:
        controller.stop()


def ok(result: tuple[int, Any, dict[str, str]], status: int = 200) -> Any:
    code, body, _ = result
    assert code == status, body
    return body


def user_key(controller: Controller, name: str, role: str | None, org_role: str = "member") -> str:
    """A member `name` (with `role` in default/default) and an API key of theirs."""
    ok(
        controller.request(
            "POST", "/api/v1/users", {"username": name, "password": PASSWORD, "role": org_role}
        ),
        201,
    )
    if role:
        ok(controller.request("PUT", "/api/v1/grants", {"user": name, "role": role}))
    return issue_key(controller.base_url, name, PASSWORD)


@pytest.fixture(scope="module")
def keys(controller: Controller) -> dict[str, str]:
    return {
        "viewer": user_key(controller, "vic", "viewer"),
        "maintainer": user_key(controller, "mia", "maintainer"),
        "tenant_admin": user_key(controller, "ted", "admin"),
        "org_admin": user_key(controller, "oda", None, org_role="admin"),
        "nobody": user_key(controller, "ned", None),
    }


PAGES = {
    "/members": {"org_admin"},
    "/teams": {"org_admin"},
    "/audit": {"tenant_admin", "org_admin"},
    "/secrets": {"maintainer", "tenant_admin", "org_admin"},
    "/agent-tokens": {"maintainer", "tenant_admin", "org_admin"},
    "/apikeys": {"viewer", "maintainer", "tenant_admin", "org_admin", "nobody"},
}


@pytest.mark.parametrize("path", sorted(PAGES))
def test_each_page_opens_for_its_roles_and_explains_itself_to_the_others(
    controller: Controller, keys: dict[str, str], path: str
) -> None:
    for who, key in keys.items():
        status, body, headers = controller.request("GET", path, headers=HTML, key=key)
        if who in PAGES[path]:
            assert status == 200, (path, who, body)
        else:
            assert status == 403, (path, who)
            content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
            assert content_type.startswith("text/html"), (path, who)
            assert "Not allowed" in body and "data-refusal" in body, (path, who)


def test_the_nav_links_only_what_the_caller_can_open(controller: Controller, keys: dict[str, str]) -> None:
    def links(who: str) -> set[str]:
        body = ok(controller.request("GET", "/apikeys", headers=HTML, key=keys[who]))
        return {path for path in PAGES if f'href="{path}"' in body}

    assert links("viewer") == {"/apikeys"}
    assert links("maintainer") == {"/apikeys", "/secrets", "/agent-tokens"}
    assert links("tenant_admin") == {"/apikeys", "/secrets", "/agent-tokens", "/audit"}
    assert links("org_admin") == set(PAGES)
    assert links("nobody") == {"/apikeys"}


def test_a_secret_value_is_never_on_a_page(controller: Controller, keys: dict[str, str]) -> None:
    value = "never-shown-7f3a9c"
    ok(controller.request("PUT", "/api/v1/secrets/PAGE_SECRET", {"value": value}), 201)
    for path in ("/secrets", "/audit"):
        body = ok(controller.request("GET", path, headers=HTML, key=keys["tenant_admin"]))
        assert "PAGE_SECRET" in body and value not in body, path


def test_disabling_a_member_stops_their_keys_and_enabling_restores_them(controller: Controller) -> None:
    key = user_key(controller, "dana", "developer")
    ok(controller.request("GET", "/api/v1/me", key=key))
    assert ok(controller.request("PUT", "/api/v1/users/dana", {"disabled": True})) == {
        "username": "dana",
        "disabled": True,
    }
    assert controller.request("GET", "/api/v1/me", key=key)[0] == 401
    users = ok(controller.request("GET", "/api/v1/users"))["users"]
    assert next(u for u in users if u["username"] == "dana")["disabled"] is True
    ok(controller.request("PUT", "/api/v1/users/dana", {"disabled": False}))
    assert ok(controller.request("GET", "/api/v1/me", key=key))["role"] == "developer"
    status, body, _ = controller.request("PUT", "/api/v1/users/dana", {})
    assert status == 400 and "disabled" in body["detail"]


def test_only_owners_disable_owners_and_nobody_disables_themselves(
    controller: Controller, keys: dict[str, str]
) -> None:
    status, body, _ = controller.request(
        "PUT", "/api/v1/users/admin", {"disabled": True}, key=keys["org_admin"]
    )
    assert status == 403 and "owner" in body["detail"]
    status, body, _ = controller.request("PUT", "/api/v1/users/admin", {"disabled": True})
    assert status == 409 and "yourself" in body["detail"]
    status, _, _ = controller.request(
        "PUT", "/api/v1/users/vic", {"disabled": True}, key=keys["tenant_admin"]
    )
    assert status == 403  # members are the organization's business


def test_team_members_are_added_and_removed_one_at_a_time(controller: Controller) -> None:
    key = user_key(controller, "tess", None)
    team = ok(controller.request("POST", "/api/v1/teams", {"name": "night shift"}), 201)
    ok(controller.request("PUT", "/api/v1/grants", {"team": "night shift", "role": "maintainer"}))
    ok(controller.request("PUT", f"/api/v1/teams/{team['id']}/members/tess"))
    ok(controller.request("PUT", f"/api/v1/teams/{team['id']}/members/tess"))  # idempotent
    teams = ok(controller.request("GET", "/api/v1/teams"))["teams"]
    assert next(t for t in teams if t["name"] == "night shift")["members"] == ["tess"]
    assert ok(controller.request("GET", "/api/v1/me", key=key))["role"] == "maintainer"
    ok(controller.request("DELETE", f"/api/v1/teams/{team['id']}/members/tess"), 204)
    assert ok(controller.request("GET", "/api/v1/me", key=key))["role"] is None
    status, _, _ = controller.request("PUT", f"/api/v1/teams/{team['id']}/members/nobody-here")
    assert status == 404
    events = ok(controller.request("GET", "/api/v1/audit"))["events"]
    assert {"team.member.add", "team.member.remove"} <= {e["action"] for e in events}
    assert any(e["target"] == "night shift: tess" for e in events)
