"""Pipelines, repositories and agents managed in a real browser against a real `buildit up`: editing
a pipeline's file (a bad edit shows its diagnostics and changes nothing, a good one changes the next
run), deleting a pipeline once confirmed, the repositories pages (add, the newest file's state,
webhook secret rotation, remove), and removing an offline agent.

Confirmations are the browser's own dialog: each test answers it (dismiss first where that must
change nothing).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

import grpc
from playwright.sync_api import Page, expect

from agent.contract._gen import buildit_pb2 as pb
from controller import __version__
from tests.e2e.conftest import Up, shot
from tests.integration.fleet.harness import wait_for
from tests.integration.triggers.gitrepos import commit, git, make_repo

V1 = 'pipeline "e2e-edit"\nstage "hello" { run "echo version one"; }\n'
V2 = (
    'pipeline "e2e-edit"\nstage "hello" { run "echo version two"; }\n'
    'stage "added" needs="hello" { run "echo added stage ran"; }\n'
)
# KDL 1.0 needs `;` before `}` in a one-line block: the parser stops at the `}` of line 2.
BAD = 'pipeline "e2e-edit"\nstage "hello" { run "echo oops" }\n'


def hook(up: Up, repo_id: str, secret: str) -> int:
    """The generic push webhook of a repository, authenticated with `secret`: its HTTP status."""
    request = urllib.request.Request(
        f"{up.base}/hooks/git/{repo_id}",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {secret}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_bad_edit_shows_its_diagnostics_and_a_good_edit_changes_the_next_run(page: Page, up: Up) -> None:
    pipeline = up.pipeline(V1)
    page.goto(f"/pipelines/{pipeline}")
    expect(page.locator(".run-meta")).to_contain_text("version 1")
    page.get_by_role("button", name="Edit file").click()
    editor = page.get_by_label(re.compile("Pipeline file"))
    expect(editor).to_have_value(V1)

    editor.fill(BAD)
    page.get_by_role("button", name="Save").click()
    problems = page.locator("#edit-diagnostics")
    expect(problems).to_be_visible()
    expect(problems).to_contain_text("The file is invalid; nothing was saved.")
    diagnostic = problems.get_by_role("button", name=re.compile(r"Go to line 2, column 33"))
    expect(diagnostic).to_contain_text(".buildit.kdl:2:33: error:")
    expect(diagnostic).to_contain_text("hint: in KDL 1.0 a node inside a one-line block needs a ';'")
    shot(page, "pipeline-edit-invalid")
    diagnostic.click()  # puts the cursor where the problem is
    cursor = page.evaluate("document.getElementById('edit-config').selectionStart")
    assert cursor == len('pipeline "e2e-edit"\n') + 32, cursor
    status, body = up.request("GET", f"/api/v1/pipelines/{pipeline}")
    assert (status, body["config"], body["version"]) == (200, V1, 1)  # nothing changed

    editor.fill(V2)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".run-meta")).to_contain_text("version 2")  # the page reloaded
    expect(page.locator(".stage-list")).to_contain_text("added")
    expect(page.locator("#source-view")).to_contain_text("version two")
    page.locator(".versions summary").click()
    expect(page.locator(".versions")).to_contain_text("version 1 · by admin")
    shot(page, "pipeline-edited")

    page.get_by_role("button", name="Run pipeline").click()
    page.wait_for_url(re.compile(rf"/pipelines/{pipeline}/runs/\d+$"))
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#run-live")).to_contain_text("added")


def test_a_pipeline_is_deleted_only_once_confirmed(page: Page, up: Up) -> None:
    pipeline = up.pipeline('pipeline "e2e-doomed"\nstage "hello" { run "echo doomed"; }\n')
    number = up.trigger(pipeline)
    up.wait_run(pipeline, number)
    page.goto(f"/pipelines/{pipeline}")
    delete = page.get_by_role("button", name="Delete pipeline e2e-doomed")
    messages: list[str] = []

    def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    delete.click()
    expect(delete).to_be_enabled()
    assert messages and "Delete pipeline e2e-doomed with all its runs" in messages[0], messages
    assert up.request("GET", f"/api/v1/pipelines/{pipeline}")[0] == 200  # dismissed: still there

    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    page.wait_for_url(re.compile(r"/pipelines$"))
    expect(page.get_by_role("link", name="e2e-doomed")).to_have_count(0)
    assert up.request("GET", f"/api/v1/pipelines/{pipeline}")[0] == 404
    assert up.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}")[0] == 404


def test_repositories_add_show_the_newest_file_rotate_the_secret_and_remove(page: Page, up: Up) -> None:
    repo = make_repo(
        up.workdir / "e2e-repo", {".buildit.kdl": 'pipeline "r"\nstage "a" { run "echo ok"; }\n'}
    )
    good = git(repo, "rev-parse", "HEAD")
    page.goto("/repos")
    expect(page.locator("[data-empty=repos]")).to_be_visible()
    page.get_by_label("URL or path").fill(str(repo))
    page.get_by_label("Name").fill("e2e-repo")
    page.get_by_label("Branches").fill("main, release/*")
    page.get_by_role("button", name="Add repository").click()
    once = page.locator("#shown-once-value")
    expect(once).to_be_visible()
    first_secret = once.inner_text()
    row = page.locator("tr[data-repo=e2e-repo]")
    expect(row).to_contain_text("release/*")
    repo_id = row.get_attribute("data-repo-id")
    assert repo_id and hook(up, repo_id, first_secret) == 202
    shot(page, "repositories")

    broken = commit(repo, {".buildit.kdl": 'pipeline "r"\nstage "a" { run "echo ok" }\n'}, "break the file")
    shown = wait_for(lambda: handled(up, repo_id, broken), 30, "the push to be handled")
    row.get_by_role("link", name="e2e-repo").click()
    page.wait_for_url(re.compile(rf"/repos/{repo_id}$"))
    summary = page.locator("#file-summary")
    expect(summary).to_contain_text(
        f"the .buildit.kdl at {broken[:7]} (newest on main) is invalid: .buildit.kdl:2:"
    )
    expect(summary).to_contain_text(f"the file shown is the last valid one, from {good[:7]}")
    expect(page.locator("#generic-hook")).to_have_text(f"{up.base}/hooks/git/{repo_id}")
    expect(page.locator(".facts")).to_contain_text(str(repo))
    run_link = page.locator("tr", has_text=broken[:7]).get_by_role("link", name=re.compile(r"run #\d+"))
    expect(run_link).to_be_visible()
    shot(page, "repository")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate webhook secret").click()
    expect(once).to_be_visible()
    expect(once).not_to_have_text(first_secret)
    second_secret = once.inner_text()
    assert (hook(up, repo_id, first_secret), hook(up, repo_id, second_secret)) == (401, 202)
    page.reload()
    expect(once).to_be_hidden()  # shown once: gone on reload
    assert second_secret not in page.content()

    run_link.click()
    expect(page.locator("#run-live")).to_have_attribute("data-status", "error")
    page.goto(f"/pipelines/{shown['pipeline_id']}")
    expect(page.locator(".file-status")).to_contain_text(f"{broken[:7]} (newest on main) is invalid")
    expect(page.get_by_role("button", name="Edit file")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Delete pipeline"))).to_have_count(0)

    page.goto(f"/repos/{repo_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove repository e2e-repo").click()
    page.wait_for_url(re.compile(r"/repos$"))
    expect(page.locator("[data-empty=repos]")).to_be_visible()
    assert up.request("GET", f"/api/v1/repos/{repo_id}")[0] == 404


def handled(up: Up, repo_id: str, sha: str) -> dict[str, Any] | None:
    """The repository's REST view once the push of `sha` became a run (or None yet)."""
    status, body = up.request("GET", f"/api/v1/repos/{repo_id}")
    assert status == 200, body
    done = any(t["sha"] == sha and t["status"] == "done" for t in body["triggers"])
    return dict(body) if done else None


def grpc_port(up: Up) -> int:
    """The gRPC port `buildit up` printed in its banner."""
    match = re.search(r"agents \(gRPC\):\s+127\.0\.0\.1:(\d+)", up.proc.output)
    assert match, up.proc.output
    return int(match.group(1))


def test_an_offline_agent_is_removed_from_the_agents_page(page: Page, up: Up) -> None:
    token = (up.workdir / ".buildit" / "registration-token").read_text().strip()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port(up)}") as channel:
        register = channel.unary_unary(
            "/buildit.v1.AgentService/Register",
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        register(  # enrolled, never connected: offline
            pb.RegisterRequest(
                registration_token=token,
                name="e2e-gone",
                executors=["local"],
                capacity=1,
                version=__version__,
            ),
            timeout=10,
        )
    status, body = up.request("GET", "/api/v1/agents")
    ids = {a["name"]: a["id"] for a in body["agents"]}
    assert status == 200 and set(ids) == {"local", "e2e-gone"}, body
    page.goto("/agents")
    gone = page.locator(f"tr[data-agent-id='{ids['e2e-gone']}']")
    expect(gone.locator(".status")).to_contain_text("offline")
    local = page.locator(f"tr[data-agent-id='{ids['local']}']")
    expect(local.locator(".status")).to_contain_text("online")
    expect(local.get_by_role("button", name=re.compile("Remove"))).to_have_count(0)  # connected
    shot(page, "agents-offline")
    page.once("dialog", lambda dialog: dialog.accept())
    gone.get_by_role("button", name="Remove agent e2e-gone").click()
    expect(gone).to_have_count(0)
    status, body = up.request("GET", "/api/v1/agents")
    assert (status, [a["name"] for a in body["agents"]]) == (200, ["local"])


def test_a_repository_is_removed_from_the_list_only_once_confirmed(page: Page, up: Up) -> None:
    repo = make_repo(up.workdir / "e2e-listed", {".buildit.kdl": 'pipeline "l"\nstage "a" { run "echo"; }\n'})
    status, body = up.request("POST", "/api/v1/repos", {"url": str(repo), "name": "e2e-listed"})
    assert status == 201, body
    page.goto("/repos")
    row = page.locator("tr[data-repo=e2e-listed]")
    remove = row.get_by_role("button", name="Remove repository e2e-listed")
    page.once("dialog", lambda dialog: dialog.dismiss())
    remove.click()
    expect(remove).to_be_enabled()
    assert up.request("GET", f"/api/v1/repos/{body['id']}")[0] == 200  # dismissed: still watched
    page.once("dialog", lambda dialog: dialog.accept())
    remove.click()
    expect(row).to_have_count(0)
    assert up.request("GET", f"/api/v1/repos/{body['id']}")[0] == 404
    assert up.request("GET", f"/api/v1/pipelines/{body['pipeline_id']}")[0] == 404
