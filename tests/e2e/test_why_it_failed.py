"""Why a run failed, at a glance, and the pages people live in, in a real browser (issue 12).

One `buildit up` (local executor) for the module. The log page opens at the failed command,
marked, with a section per command that folds; the run page shows the failed stage's last lines;
Retry is offered where a retry can work. The dashboard fits 1280 px with relative times, the
Pipelines page is live, and every UI path that names nothing answers the HTML "not found" page.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Up, shot, signed_in
from tests.e2e.test_access_ui import PASSWORD, member
from tests.e2e.test_ui import MARK, MARKED, NAMELESS
from tests.integration.triggers.gitrepos import commit, make_repo

FAILING = """pipeline "e2e-why"
stage "build" {{
    run "echo building"
    run r#"for i in $(seq 1 1500); do echo "noise $i"; done"#
    run r#"test -f {gate} || {{ printf '\\033[31mFAIL\\033[0m: expected 2, got 3\\n'; exit 2; }}"#
    run "echo packaged"
}}
stage "docs" {{ run "echo docs fine"; }}
stage "ship" needs="build" {{ run "echo shipped"; }}
"""
FAILED_COMMAND = "test -f {gate} || {{ printf '\\033[31mFAIL\\033[0m: expected 2, got 3\\n'; exit 2; }}"
LONG_PIPELINE = 'pipeline "e2e-long"\nstage "compile" { run "echo ok"; }\nstage "test" { run "exit 3"; }\n'
RELATIVE = re.compile(r"^(just now|\d+ s ago|\d+ min ago)$")
EXACT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+")


def test_the_log_opens_at_the_failed_command_marked_with_sections_that_fold_and_a_retry(
    page: Page, up: Up
) -> None:
    gate = up.gate("why-fixed")
    pipeline = up.pipeline(FAILING.format(gate=gate))
    number = up.trigger(pipeline)
    run = up.wait_run(pipeline, number)
    build = next(s for s in run["stages"] if s["name"] == "build")
    command = FAILED_COMMAND.format(gate=gate)
    assert build["message"] == f'command 3 of 4 failed: "{command[:59].rstrip()}…" exited with 2'

    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/build")
    failed = page.locator("#log .line.cmd-failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".tx")).to_have_text(f"$ {command}")
    expect(failed).to_be_in_viewport()
    assert page.evaluate("BuildItLog.state().failedLine") == int(failed.get_attribute("id")[1:])
    expect(page.locator("#stage-message")).to_have_text(build["message"])
    # The log ends with BuildIt's closing line, told apart from the commands' output.
    closing = page.locator("#log .line").last
    expect(closing).to_have_class(re.compile(r"\bbi-end\b.*\bend-failed\b"))
    expect(closing.locator(".tx")).to_have_text(f"buildit: {build['message']}")
    # A section per command: the list links to each, says which failed and what never ran.
    sections = page.locator("#log-sections li")
    expect(sections).to_have_count(4)
    assert sections.evaluate_all("els => els.map(e => e.dataset.state)") == [
        "succeeded",
        "succeeded",
        "failed",
        "not_run",
    ]
    expect(sections.nth(3)).to_have_text("1 more command not run")
    shot(page, "log-failed")

    # Folding the second command (from the list: its header is not among the lines loaded)
    # hides its output; unfolding shows it again.
    noise = page.locator("#log .line").filter(has_text=re.compile(r"^\d+\s*noise 1500$"))
    expect(noise).to_be_visible()
    page.get_by_role("button", name="Collapse command 2", exact=True).click()
    expect(noise).to_be_hidden()
    expect(page.get_by_role("button", name="Expand command 2", exact=True)).to_have_attribute(
        "aria-expanded", "false"
    )
    expect(failed).to_be_visible()  # the next command's section is not folded
    page.get_by_role("button", name="Expand command 2", exact=True).click()
    expect(noise).to_be_visible()
    # The failed command's own header folds its output too.
    reason = page.locator("#log .line").filter(has_text=re.compile(r"FAIL: expected 2, got 3$"))
    expect(reason).to_be_visible()
    failed.get_by_role("button", name=re.compile(r"^Collapse command 3: ")).click()
    expect(reason).to_be_hidden()
    expect(failed.get_by_role("button", name=re.compile(r"^Expand command 3: "))).to_have_attribute(
        "aria-expanded", "false"
    )
    failed.get_by_role("button", name=re.compile(r"^Expand command 3: ")).click()
    expect(reason).to_be_visible()
    # The first command's section is reached from the list (the page around its line loads).
    sections.nth(0).get_by_role("link").click()
    expect(page.locator("#log .line.cmd").first.locator(".tx")).to_have_text("$ echo building")
    assert page.evaluate(NAMELESS) == []

    # The other stages of the run are one click away; no Retry where it cannot work.
    stages_nav = page.get_by_role("navigation", name=f"Stages of run #{number}")
    stages_nav.get_by_role("link", name=re.compile("^docs")).click()
    expect(page).to_have_url(re.compile(rf"/runs/{number}/stages/docs$"))
    expect(page.locator("#log-head")).to_have_attribute("data-status", "succeeded")
    expect(page.get_by_role("button", name="Retry stage docs")).to_have_count(0)
    expect(page.locator("#log .line.cmd-failed")).to_have_count(0)
    expect(page.locator("#log .line").last).to_have_text(re.compile(r"stage succeeded \(1 command\)$"))
    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/ship")  # skipped: its need failed
    expect(page.locator("#log-head")).to_have_attribute("data-status", "skipped")
    expect(page.get_by_role("button", name="Retry stage ship")).to_have_count(0)

    # Retry from the failed stage's log: the page follows the new attempt to its end.
    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/build")
    gate.touch()
    page.get_by_role("button", name="Retry stage build").click()
    expect(page.locator("#log-head")).to_have_attribute("data-status", "succeeded")
    expect(page.get_by_text("attempt 2 of 2")).to_be_visible()
    expect(page.locator("#log .line").last).to_have_text(re.compile(r"stage succeeded \(4 commands\)$"))
    expect(page.get_by_role("button", name="Retry stage build")).to_have_count(0)


def test_a_viewer_gets_no_retry_button(browser: Any, up: Up) -> None:
    member(up, "why-viewer", "viewer")
    pipeline = up.pipeline('pipeline "e2e-why-viewer"\nstage "s" { run "exit 5"; }\n')
    number = up.trigger(pipeline)
    assert up.wait_run(pipeline, number)["status"] == "failed"
    with signed_in(browser, up, "why-viewer", PASSWORD) as page:
        page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/s")
        expect(page.locator("#log .line.cmd-failed")).to_have_count(1)
        expect(page.get_by_role("button", name="Retry stage s")).to_have_count(0)


def test_the_run_page_shows_the_last_lines_of_each_failed_stage(page: Page, up: Up) -> None:
    pipeline = up.pipeline(
        'pipeline "e2e-why-tail"\n'
        'stage "unit" {\n'
        '    run r#"for i in $(seq 1 30); do echo "case $i ok"; done"#\n'
        "    run r#\"printf '\\033[31mFAILED\\033[0m case 31\\n'; exit 1\"#\n"
        "}\n"
        'stage "lint" { run "echo clean"; }\n'
    )
    number = up.trigger(pipeline)
    up.wait_run(pipeline, number)
    page.goto(f"/pipelines/{pipeline}/runs/{number}")
    failure = page.locator(".failure[data-stage=unit]")
    expect(failure).to_contain_text('command 2 of 2 failed: "printf')
    tail = failure.locator("pre.log-tail .tail-line")
    expect(tail).to_have_count(10)
    texts = tail.all_inner_texts()
    assert texts[-3:] == [
        "$ printf '\\033[31mFAILED\\033[0m case 31\\n'; exit 1",
        "FAILED case 31",
        'buildit: command 2 of 2 failed: "printf '
        "'\\033[31mFAILED\\033[0m case 31\\n'; exit 1\" exited with 1",
    ]
    assert texts[0] == "case 24 ok"
    # ANSI colours as the log page renders them; BuildIt's lines marked as its own.
    expect(failure.locator("pre.log-tail span.ansi-red-fg")).to_have_text("FAILED")
    expect(tail.last).to_have_class(re.compile(r"\bbi-end\b"))
    expect(page.locator(".failure[data-stage=lint]")).to_have_count(0)
    shot(page, "run-why-failed")


def test_the_dashboard_fits_1280px_with_relative_times_and_the_failed_stage(page: Page, up: Up) -> None:
    subject = "Refactor the widget frobnicator " + "so that every single column still fits " * 6
    repo = make_repo(up.workdir / "longsubject")
    commit(
        repo,
        {".buildit.kdl": LONG_PIPELINE},
        subject,
    )
    status, body = up.request("POST", "/api/v1/repos", {"url": str(repo), "name": "e2e-long"})
    assert status == 201, body
    status, run = up.request("POST", f"/api/v1/repos/{body['id']}/runs", {"branch": "main"})
    assert status == 201, run
    up.wait_run(run["pipeline_id"], run["number"])

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/")
    row = page.locator("tr.run-row", has=page.get_by_role("link", name="e2e-long"))
    expect(row.locator(".status")).to_contain_text("failed")
    # The row names the stage that failed and links to its log.
    failed = row.locator("a.failed-stage")
    expect(failed).to_have_text("✗ test")
    assert failed.get_attribute("href") == f"/pipelines/{run['pipeline_id']}/runs/{run['number']}/stages/test"
    # Nothing overflows: every cell of the row ends inside the table's box, the table inside the page.
    boxes = row.evaluate(
        """tr => {
            const wrap = tr.closest('.table-wrap').getBoundingClientRect();
            return {wrap: wrap.right, page: document.documentElement.scrollWidth,
                    width: window.innerWidth, scroll: tr.closest('.table-wrap').scrollWidth,
                    client: tr.closest('.table-wrap').clientWidth,
                    cells: [...tr.cells].map(td => [td.dataset.label, td.getBoundingClientRect().right])};
        }"""
    )
    assert boxes["page"] <= boxes["width"] and boxes["scroll"] <= boxes["client"], boxes
    assert all(right <= boxes["wrap"] + 0.5 for _, right in boxes["cells"]), boxes
    assert [label for label, _ in boxes["cells"]][-2:] == ["Started", "Duration"]
    # The long subject is cut with an ellipsis; the whole of it is the cell's title.
    message = row.locator("td.col-message")
    assert message.get_attribute("title") == subject.strip()
    assert message.evaluate("td => td.scrollWidth > td.clientWidth")
    assert message.evaluate("td => getComputedStyle(td).textOverflow") == "ellipsis"
    # Started: relative, the exact time with its zone on hover.
    started = row.locator("td[data-label=Started] time")
    expect(started).to_have_text(RELATIVE)
    expect(started).to_have_attribute("title", EXACT)
    shot(page, "dashboard-1280")


def test_the_pipelines_page_is_live(page: Page, up: Up) -> None:
    pipeline = up.pipeline('pipeline "e2e-live-card"\nstage "s" { run "echo card"; }\n')
    page.goto("/pipelines")
    expect(page.locator("#live-status")).to_have_text("live")
    card = page.locator(f"li.card[data-pipeline-id='{pipeline}']")
    expect(card.locator(".last-run")).to_have_text("No runs yet.")
    page.evaluate(MARK)
    number = up.trigger(pipeline)
    expect(card).to_have_attribute("data-last-status", "succeeded")
    expect(card.locator(".last-run")).to_contain_text(f"Last run #{number}")
    expect(card.locator(".last-run time")).to_have_text(RELATIVE)
    expect(card.locator(".last-run time")).to_have_attribute("title", EXACT)
    number = up.trigger(pipeline)
    expect(card.locator(".last-run")).to_contain_text(f"Last run #{number}")
    assert page.evaluate(MARKED)  # updated in place, never reloaded
    # A page that is not live shows no "connecting…" that never ends.
    page.goto("/apikeys")
    expect(page.locator("#live-status")).to_be_hidden()


def test_every_ui_path_that_names_nothing_answers_the_html_not_found_page(page: Page, up: Up) -> None:
    pipeline = up.pipeline('pipeline "e2e-404"\nstage "s" { run "true"; }\n')
    for path in (
        "/pipelines/not-a-uuid",
        "/runs/xyz",
        "/no/such/page",
        f"/pipelines/{pipeline}/runs/abc",
        f"/pipelines/{pipeline}/runs/1/stages/s/extra",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        assert response.headers["content-type"].startswith("text/html"), path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("main")).to_contain_text(path)
        expect(page.get_by_role("link", name="Back to the runs")).to_be_visible()
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Repositories")).to_be_visible()
    # The API keeps answering JSON.
    for path in ("/api/v1/nope", f"/api/v1/pipelines/{pipeline}/runs/abc", "/api/v1/pipelines/not-a-uuid"):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        assert response.headers["content-type"].startswith("application/json"), path
        assert response.json()["status_code"] == 404
