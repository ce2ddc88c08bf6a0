"""Accounts in a real browser: roles hide what they cannot do (and the server refuses it anyway),
tenant switching, CSRF, signing out, and the account pages (members, teams, API keys, agent tokens,
secrets, audit log) against one real `buildit up` for the whole module.

Users are made over the REST API with the admin's key unless the test is about making them in the UI.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Up, shot, signed_in
from tests.e2e.test_ui import NAMELESS
from tests.support.credentials import issue_key

PASSWORD = "a long enough password"
QUICK = 'pipeline "{name}"\nstage "hello" {{ run "echo hello"; }}\n'

#: fetch() from the page's own JS context, with the page's CSRF token unless `csrf` is false.
FETCH = """async ([url, method, body, csrf]) => {
    const headers = csrf ? BuildIt.jsonHeaders() : {"Content-Type": "application/json"};
    const resp = await fetch(url, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
    let detail = "";
    try { detail = (await resp.json()).detail || ""; } catch (e) {}
    return {status: resp.status, detail};
}"""


def member(up: Up, name: str, role: str | None, tenant: str = "default/default") -> None:
    """A member of the default organization with `role` in `tenant` (none: no grant)."""
    status, body = up.request("POST", "/api/v1/users", {"username": name, "password": PASSWORD})
    assert status == 201, body
    if role:
        grant = {"user": name, "role": role}
        status, body = up.request("PUT", "/api/v1/grants", grant, headers={"X-BuildIt-Tenant": tenant})
        assert status == 200, body


def call(page: Page, url: str, method: str = "POST", body: Any = None, csrf: bool = True) -> dict[str, Any]:
    return dict(page.evaluate(FETCH, [url, method, body, csrf]))


def nav_links(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("nav[aria-label=Main] a").all_inner_texts()]


def test_a_viewer_sees_no_actions_and_a_forged_trigger_is_refused(browser: Any, up: Up) -> None:
    member(up, "vera", "viewer")
    member(up, "dev", "developer")
    pipeline = up.pipeline(QUICK.format(name="e2e-roles"))
    number = up.trigger(pipeline)
    up.wait_run(pipeline, number)
    with signed_in(browser, up, "vera", PASSWORD) as page:
        assert nav_links(page) == ["Runs", "Pipelines", "Repositories", "Agents", "API keys"]
        expect(page.locator(".user-name")).to_have_text("vera · viewer")
        page.goto(f"/pipelines/{pipeline}")
        expect(page.get_by_role("heading", name="e2e-roles")).to_be_visible()
        expect(page.locator("#trigger-form")).to_have_count(0)
        expect(page.get_by_role("button", name="Run pipeline")).to_have_count(0)
        page.goto(f"/pipelines/{pipeline}/runs/{number}")
        expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded")
        expect(page.locator("#run-live button")).to_have_count(0)  # no re-run, cancel or retry
        page.goto("/agents")
        expect(page.locator("tr", has=page.get_by_text("local", exact=True))).to_be_visible()
        expect(page.locator("#agents button")).to_have_count(0)
        # Hiding is only a courtesy: the page's own JS, with its CSRF token, is still refused.
        page.goto(f"/pipelines/{pipeline}")
        forged = call(page, f"/api/v1/pipelines/{pipeline}/runs", body={"branch": "main"})
        assert forged["status"] == 403 and "developer" in forged["detail"], forged
        status, _ = up.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number + 1}")
        assert status == 404  # nothing was started
        # A page the role cannot use answers an HTML page saying why, not JSON.
        for path, needs in (("/secrets", "maintainer role"), ("/members", "organization owner or admin")):
            response = page.goto(path)
            assert response is not None and response.status == 403, path
            assert response.headers["content-type"].startswith("text/html")
            expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
            expect(page.locator("[data-refusal]")).to_contain_text(needs)
        shot(page, "forbidden")

    with signed_in(browser, up, "dev", PASSWORD) as page:
        page.goto(f"/pipelines/{pipeline}")
        expect(page.get_by_role("button", name="Run pipeline")).to_be_visible()
        page.goto(f"/pipelines/{pipeline}/runs/{number}")
        expect(page.get_by_role("button", name="Re-run")).to_be_visible()
        page.goto("/agents")
        expect(page.locator("tr", has=page.get_by_text("local", exact=True))).to_be_visible()
        expect(page.locator("#agents button")).to_have_count(0)  # draining needs a maintainer
        assert "Secrets" not in nav_links(page)


def test_switching_tenants_changes_the_pipelines_listed(page: Page, up: Up) -> None:
    status, body = up.request("POST", "/api/v1/tenants", {"slug": "blue"})
    assert status == 201, body
    blue = {"X-BuildIt-Tenant": "default/blue"}
    config = {"config": QUICK.format(name="blue-app")}
    status, body = up.request("POST", "/api/v1/pipelines", config, headers=blue)
    assert status == 201, body
    up.pipeline(QUICK.format(name="red-app"))
    page.goto("/pipelines")
    expect(page.get_by_role("link", name="red-app")).to_be_visible()
    expect(page.get_by_role("link", name="blue-app")).to_have_count(0)
    switch = page.get_by_label("Tenant")
    expect(switch.locator("option")).to_have_text(["default/blue (admin)", "default/default (admin)"])
    switch.select_option(label="default/blue (admin)")
    page.get_by_role("button", name="Switch").click()
    expect(page).to_have_url(re.compile(r"/pipelines$"))
    expect(page.get_by_role("link", name="blue-app")).to_be_visible()
    expect(page.get_by_role("link", name="red-app")).to_have_count(0)
    expect(page.get_by_label("Tenant")).to_have_value(re.compile(".+"))
    assert page.get_by_label("Tenant").locator("option:checked").inner_text() == "default/blue (admin)"
    shot(page, "tenant-switched")
    # The choice belongs to the session: a new page keeps it.
    page.goto("/pipelines")
    expect(page.get_by_role("link", name="blue-app")).to_be_visible()


def test_a_write_without_the_csrf_token_is_refused_in_the_browser(page: Page, up: Up) -> None:
    page.goto("/pipelines")
    body = {"config": QUICK.format(name="e2e-csrf")}
    refused = call(page, "/api/v1/pipelines", body=body, csrf=False)
    assert refused["status"] == 403 and "CSRF" in refused["detail"], refused
    names = {p["name"] for p in up.request("GET", "/api/v1/pipelines")[1]["pipelines"]}
    assert "e2e-csrf" not in names
    assert call(page, "/api/v1/pipelines", body=body)["status"] == 201  # the same request with the token


def test_signing_out_ends_the_session(page: Page, up: Up) -> None:
    page.goto("/pipelines")
    cookie = next(c for c in page.context.cookies() if c["name"] == "buildit_session")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fpipelines$"))
    expect(page.get_by_role("heading", name="Sign in to BuildIt")).to_be_visible()
    page.goto("/agents")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fagents$"))
    assert call(page, "/api/v1/me", "GET")["status"] == 401
    # The old cookie itself is dead on the server, not only forgotten by this browser.
    page.context.add_cookies([cookie])
    page.reload()
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fagents$"))
    assert call(page, "/api/v1/me", "GET")["status"] == 401


def test_an_admin_adds_a_member_grants_a_role_and_makes_an_api_key_shown_once(page: Page, up: Up) -> None:
    page.goto("/members")
    page.get_by_label("User name").fill("carol")
    page.get_by_role("button", name="Add member").click()
    once = page.locator("#shown-once-value")
    expect(once).to_have_text(re.compile(r"^\S{12,}$"))  # the generated password, once
    password = once.inner_text()
    row = page.locator("tr[data-user=carol]")
    expect(row).to_contain_text("member")
    grant = page.locator("form[data-api='/api/v1/grants']")
    grant.get_by_label("Member").select_option("carol")
    grant.get_by_label("Tenant").select_option(label="default/default")
    grant.get_by_label("Role").select_option("developer")
    grant.get_by_role("button", name="Grant role").click()
    expect(row).to_contain_text("default/default: developer")
    shot(page, "members")
    carol = issue_key(up.base, "carol", password)
    status, me = up.request("GET", "/api/v1/me", key=carol)
    assert status == 200 and me["role"] == "developer"
    page.reload()
    expect(page.locator("#shown-once")).to_be_hidden()
    assert password not in page.content()
    # Disabling ends what carol holds at once; enabling gives it back.
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Disable carol").click()
    expect(row).to_have_attribute("data-disabled", "true")
    assert up.request("GET", "/api/v1/me", key=carol)[0] == 401
    row.get_by_role("button", name="Enable carol").click()
    expect(row).to_have_attribute("data-disabled", "false")
    assert up.request("GET", "/api/v1/me", key=carol)[0] == 200
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke carol's role in default/default").click()
    expect(row).not_to_contain_text("default/default: developer")

    page.goto("/apikeys")
    page.get_by_role("region", name="Create a personal key").get_by_label("Name").fill("e2e key")
    page.get_by_role("button", name="Create key").click()
    expect(once).to_have_text(re.compile(r"^bk_"))
    key = once.inner_text()
    status, me = up.request("GET", "/api/v1/me", key=key)
    assert status == 200 and me["name"] == "admin"
    key_row = page.locator("tr", has_text="e2e key")
    expect(key_row).to_have_attribute("data-state", "active")
    assert key.startswith(f"bk_{key_row.get_attribute('data-key')}_")
    shot(page, "apikeys")
    page.reload()
    expect(page.locator("#shown-once")).to_be_hidden()
    expect(key_row).to_be_visible()
    assert key not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    key_row.get_by_role("button", name="Revoke key e2e key").click()
    expect(key_row).to_have_attribute("data-state", "revoked")
    assert up.request("GET", "/api/v1/me", key=key)[0] == 401


def test_a_team_is_made_and_granted_a_role_in_the_ui(page: Page, up: Up) -> None:
    member(up, "tom", None)
    page.goto("/teams")
    page.get_by_label("Name").fill("ops")
    page.get_by_role("button", name="Create team").click()
    team = page.locator("section[data-team=ops]")
    expect(team).to_contain_text("No members yet.")
    team.get_by_label("Member to add to ops").select_option("tom")
    team.get_by_role("button", name="Add to ops").click()
    expect(team.locator("li[data-member=tom]")).to_be_visible()
    team.get_by_label("Tenant for ops").select_option(label="default/default")
    team.get_by_label("Role of ops").select_option("maintainer")
    team.get_by_role("button", name="Grant ops the role").click()
    expect(team).to_contain_text("default/default: maintainer")
    shot(page, "teams")
    status, me = up.request("GET", "/api/v1/me", key=issue_key(up.base, "tom", PASSWORD))
    assert status == 200 and me["role"] == "maintainer"  # through the team
    team.get_by_role("button", name="Remove tom from ops").click()
    expect(team.locator("li[data-member=tom]")).to_have_count(0)


def test_agent_token_and_secret_made_in_the_ui_are_never_shown_again(page: Page, up: Up) -> None:
    page.goto("/agent-tokens")
    page.get_by_label("Name").fill("e2e hosts")
    page.get_by_role("button", name="Create token").click()
    once = page.locator("#shown-once-value")
    expect(once).not_to_be_empty()
    token = once.inner_text()
    row = page.locator("tr", has_text="e2e hosts")
    expect(row).to_have_attribute("data-state", "active")
    assert token.startswith(f"bkr_{row.get_attribute('data-token')}_")
    shot(page, "agent-tokens")
    page.reload()
    expect(row).to_be_visible()
    assert token not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke token e2e hosts").click()
    expect(row).to_have_attribute("data-state", "revoked")

    value = "e2e-" + secrets.token_hex(12)
    page.goto("/secrets")
    page.get_by_label("Name").fill("E2E_SECRET")
    page.get_by_label("Value").fill(value)
    page.get_by_role("button", name="Save secret").click()
    secret_row = page.locator("tr[data-secret=E2E_SECRET]")
    expect(secret_row).to_contain_text("the whole tenant")
    expect(page.get_by_label("Value")).to_have_value("")
    assert value not in page.content()
    # Setting it again replaces the value: still one row.
    page.get_by_label("Name").fill("E2E_SECRET")
    page.get_by_label("Value").fill(value + "-2")
    page.get_by_role("button", name="Save secret").click()
    expect(page.locator("#flash")).to_have_text("Secret saved.")
    expect(secret_row).to_have_count(1)
    shot(page, "secrets")
    for path in ("/secrets", "/audit", "/"):
        page.goto(path)
        assert value not in page.content(), path
    page.goto("/audit")
    expect(page.locator("tr[data-audit-action='secret.create']", has_text="E2E_SECRET")).to_have_count(1)
    expect(page.locator("tr[data-audit-action='agent_token.create']", has_text="e2e hosts")).to_have_count(1)
    shot(page, "audit")
    # Paging back: events older than a given one, and a way back to the newest.
    fifth = int(page.locator("tr[data-event]").nth(4).get_attribute("data-event") or 0)
    page.goto(f"/audit?before={fifth}")
    older = page.locator("tr[data-event]").evaluate_all("els => els.map(e => Number(e.dataset.event))")
    assert older and max(older) < fifth
    expect(page.get_by_role("link", name="← Newest")).to_be_visible()
    status, listed = up.request("GET", "/api/v1/secrets")
    assert status == 200 and value not in str(listed)
    page.goto("/secrets")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete secret E2E_SECRET (tenant-wide)").click()
    expect(secret_row).to_have_count(0)


def test_the_account_pages_name_every_control(page: Page, up: Up) -> None:
    for path in ("/members", "/teams", "/apikeys", "/agent-tokens", "/secrets", "/audit"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert page.evaluate(NAMELESS) == [], path
