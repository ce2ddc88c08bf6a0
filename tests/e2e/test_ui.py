"""The web UI in a real browser against a real `buildit up` and its local agent.

Tests run in file order on one controller: the first sees the empty dashboard. Waits are generous
`expect` polls for something to appear; nothing asserts how fast.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Up, shot

# A property set on `window` survives only as long as the page is not reloaded: tests set it and
# check it later to prove an update arrived live.
MARK = "window.__noReload = 'still here'"
MARKED = "window.__noReload === 'still here'"


def gated(up: Up, name: str) -> str:
    """Shell that waits until the test creates gate file `name`."""
    return f"while [ ! -f {up.gate(name)} ]; do sleep 0.1; done"


def test_dashboard_empty_state_then_a_run_appears_live(page: Page, up: Up) -> None:
    page.goto("/")
    empty = page.locator("[data-empty=dashboard]")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("buildit repo add PATH")
    expect(empty).to_contain_text(".buildit.kdl")
    expect(page.locator("#live-status")).to_have_text("live")
    shot(page, "dashboard-empty")
    page.evaluate(MARK)
    quick = up.pipeline('pipeline "e2e-quick"\nstage "hello" { run "echo hello"; }\n')
    up.trigger(quick)
    row = page.locator("tr.run-row", has=page.get_by_role("link", name="e2e-quick"))
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_contain_text("succeeded")
    assert page.evaluate(MARKED)
    # Filters drive the table through htmx and the URL reflects them.
    page.get_by_label("Status").select_option("failed")
    expect(page.locator("[data-empty=filtered]")).to_be_visible()
    expect(page).to_have_url(re.compile(r"status=failed"))
    page.get_by_label("Status").select_option("succeeded")
    expect(row).to_be_visible()
    shot(page, "dashboard")
    page.goto("/pipelines")
    shot(page, "pipelines")
    missing = page.goto(f"/pipelines/{quick}/runs/99")
    assert missing is not None and missing.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("main")).to_contain_text("There is no run 99")


def test_trigger_from_the_pipeline_page_and_watch_the_dag_and_log_live(page: Page, up: Up) -> None:
    config = (
        'pipeline "e2e-live"\n'
        'stage "prep" {\n'
        "    run r#\"printf '\\033[32mgreen prep\\033[0m\\n'\"#\n"
        "    run r#\"printf '\\033[1;38;5;208mbold orange\\033[0m\\n'\"#\n"
        "}\n"
        'stage "work" needs="prep" {\n'
        '    run r#"for i in $(seq 1 20); do echo "before $i"; done"#\n'
        '    run r#"echo \'<img src=x onerror="window.__xss = 2">\'"#\n'
        f'    run r#"{gated(up, "live")}"#\n'
        '    run r#"for i in $(seq 1 20); do echo "after $i"; done"#\n'
        "}\n"
    )
    pipeline = up.pipeline(config)
    page.goto(f"/pipelines/{pipeline}")
    expect(page.locator("pre.kdl .k-node").first).to_have_text("pipeline")
    expect(page.locator(".stage-list li")).to_have_count(2)
    shot(page, "pipeline")
    page.get_by_label("Branch").fill("main")
    page.get_by_role("button", name="Run pipeline").click()
    expect(page).to_have_url(re.compile(rf"/pipelines/{pipeline}/runs/1$"))
    work = page.locator(".dag .node[data-stage=work]")
    expect(work).to_have_attribute("data-status", "running")
    expect(page.locator(".dag .node[data-stage=prep]")).to_have_attribute("data-status", "succeeded")
    page.evaluate(MARK)
    shot(page, "run-running")

    log = page.context.new_page()
    log.goto(f"/pipelines/{pipeline}/runs/1/stages/work")
    expect(log.locator("#log .line").filter(has_text="before 20")).to_have_count(1)
    log.evaluate(MARK)
    up.gate("live").touch()
    expect(log.locator("#log .line").filter(has_text="after 20")).to_have_count(1)
    assert log.evaluate(MARKED)
    expect(log.locator("#stage-status .status")).to_contain_text("succeeded")
    expect(log.locator("#stage-status .status-icon")).to_have_text("✓")
    expect(log.locator("#exit-code")).to_have_text("0")
    # The commands' output (BuildIt's own lines, the `$ command` headers and the closing line, apart).
    texts = log.locator("#log .line:not(.bi) .tx").all_inner_texts()
    expected = [f"before {i}" for i in range(1, 21)] + [f"after {i}" for i in range(1, 21)]
    assert [t for t in texts if not t.startswith("<img")] == expected
    expect(log.locator("#log .line.cmd")).to_have_count(4)
    expect(log.locator("#log .line.bi-end .tx")).to_have_text("buildit: stage succeeded (4 commands)")
    # Log text is text: markup in it is shown, never run.
    expect(
        log.locator("#log .line .tx").filter(has_text=re.compile(r'^<img src=x onerror="window.__xss = 2">$'))
    ).to_have_count(1)
    assert log.evaluate("window.__xss === undefined")
    log.get_by_label("Timestamps").check()
    expect(log.locator("#log .line .ts").last).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
    shot(log, "log")

    # The box changed colour (status class) on the run page without a reload.
    expect(work).to_have_attribute("data-status", "succeeded")
    expect(work).to_have_class(re.compile(r"status-succeeded"))
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded")
    assert page.evaluate(MARKED)
    shot(page, "run")

    # ANSI colours are rendered as colours, not escape codes.
    log.goto(f"/pipelines/{pipeline}/runs/1/stages/prep")
    green = log.locator("#log .line .tx span").filter(has_text="green prep")
    expect(green).to_have_count(1)
    # As classes (the page's CSP allows no inline styles); 256-colour ones through the CSSOM.
    expect(green).to_have_class("ansi-green-fg")
    assert green.evaluate("e => getComputedStyle(e).color") == "rgb(0, 187, 0)"
    orange = log.locator("#log .line .tx span").filter(has_text="bold orange")
    expect(orange).to_have_class("ansi-bold")
    assert orange.get_attribute("style") == "color: rgb(255, 135, 0);"
    assert orange.evaluate("e => getComputedStyle(e).fontWeight") == "700"
    assert "\x1b" not in log.locator("#log").inner_text()


def test_cancel_a_running_run(page: Page, up: Up) -> None:
    pipeline = up.pipeline(f'pipeline "e2e-cancel"\nstage "wait" {{ run r#"{gated(up, "never")}"#; }}\n')
    number = up.trigger(pipeline)
    page.goto(f"/pipelines/{pipeline}/runs/{number}")
    expect(page.locator(".dag .node[data-stage=wait]")).to_have_attribute("data-status", "running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-live")).to_have_attribute("data-status", "cancelled")
    expect(page.locator(".run-head .status")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)


def test_retry_a_failed_stage_then_rerun(page: Page, up: Up) -> None:
    gate = up.gate("fixed")
    pipeline = up.pipeline(
        'pipeline "e2e-retry"\n'
        f'stage "flaky" {{ run r#"test -f {gate} || {{ echo not yet; exit 3; }}"#; }}\n'
        'stage "after" needs="flaky" { run "echo after"; }\n'
    )
    number = up.trigger(pipeline)
    page.goto(f"/pipelines/{pipeline}/runs/{number}")
    expect(page.locator("#run-live")).to_have_attribute("data-status", "failed")
    row = page.locator(".stages-table tr[data-stage=flaky]")
    expect(row.get_by_role("cell").nth(4)).to_have_text("3")  # exit code
    shot(page, "run-failed")
    gate.touch()
    page.get_by_role("button", name="Retry stage flaky").click()
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(row.get_by_role("cell").nth(2)).to_have_text("2")  # attempt
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded")
    page.get_by_role("button", name="Re-run").click()
    expect(page).to_have_url(re.compile(rf"/pipelines/{pipeline}/runs/{number + 1}$"))
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded")


def test_a_200000_line_log_stays_usable(page: Page, up: Up) -> None:
    pipeline = up.pipeline('pipeline "e2e-big"\nstage "big" { run r#"seq 1 200000 | sed "s/^/row /""#; }\n')
    number = up.trigger(pipeline)
    assert up.wait_run(pipeline, number)["status"] == "succeeded"
    url = f"/pipelines/{pipeline}/runs/{number}/stages/big"
    page.goto(url)
    expect(page.locator("#log .line:not(.bi)").last).to_have_text(re.compile(r"200001\s*row 200000$"))
    state = page.evaluate("BuildItLog.state()")
    assert state["last"] == 200_002  # the `$ command` header first, BuildIt's closing line last
    assert page.locator("#log .line").count() <= 5000
    shot(page, "log-big")

    # Scrolling to the top loads the page before, and the DOM stays bounded.
    first = state["first"]
    page.locator("#log").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_function(f"() => BuildItLog.state().first < {first}")
    assert page.locator("#log .line").count() <= 5000
    # Far enough up, the newest lines leave the page: it stops following until asked.
    for _ in range(6):
        first = page.evaluate("BuildItLog.state().first")
        page.locator("#log").evaluate("el => { el.scrollTop = 0; }")
        page.wait_for_function(f"() => BuildItLog.state().first < {first}")
    state = page.evaluate("BuildItLog.state()")
    assert state["lines"] <= 5000 and not state["atEnd"] and state["last"] < 200_000
    assert state["last"] - state["first"] + 1 == state["lines"]
    expect(page.get_by_role("button", name="Load later lines")).to_be_visible()
    page.get_by_role("button", name="Load later lines").click()
    page.wait_for_function(f"() => BuildItLog.state().last > {state['last']}")
    got = page.locator(f"#L{state['last'] + 1} .tx").inner_text()
    assert got == f"row {state['last']}", (got, state, page.evaluate("BuildItLog.state()"))
    page.get_by_role("button", name="Follow", exact=True).click()
    expect(page.locator("#log .line:not(.bi)").last).to_have_text(re.compile(r"row 200000$"))
    assert page.evaluate("BuildItLog.state().atEnd")

    # A line anchor loads the page around it, highlights it, and survives a reload.
    page.goto(url + "#L120")
    line = page.locator("#L120")
    expect(line).to_have_class(re.compile(r"\btarget\b"))
    expect(line).to_be_in_viewport()
    page.reload()
    expect(page.locator("#L120")).to_have_class(re.compile(r"\btarget\b"))
    expect(page.locator("#L120")).to_be_in_viewport()
    assert page.locator("#log .line").count() <= 5000

    # The page endpoint explains bad requests.
    lines = f"/ui/pipelines/{pipeline}/runs/{number}/stages/big/lines"
    status, body = up.request("GET", f"{lines}?before=10&after=20")
    assert status == 400 and "at most one of" in body["detail"]
    status, body = up.request("GET", f"{lines}?count=0")
    assert status == 400 and "'count'" in body["detail"]
    status, body = up.request("GET", f"/ui/pipelines/{pipeline}/runs/{number}/stages/nope/lines")
    assert status == 404 and "no stage 'nope'" in body["detail"]
    status, body = up.request("GET", f"{lines}?line=199999&count=3")
    assert status == 200 and body["first_line"] == 199_899 and body["text"].count("\n") == 3

    # Search scans the whole log and jumps to a match.
    page.get_by_role("searchbox", name="Search").fill("row 150000")
    page.get_by_role("button", name="Find").click()
    result = page.locator("#search-results a").first
    expect(result).to_have_text(re.compile(r"L15000[01]"))
    result.click()
    expect(page.locator("#log .line.target")).to_contain_text("row 150000")
    assert page.locator("#log .line").count() <= 5000


def test_the_log_resumes_after_the_socket_drops_with_no_gap_or_duplicate(page: Page, up: Up) -> None:
    pipeline = up.pipeline(
        'pipeline "e2e-resume"\n'
        'stage "s" {\n'
        '    run r#"for i in $(seq 1 30); do echo "a $i"; done"#\n'
        f'    run r#"{gated(up, "resume1")}"#\n'
        '    run r#"for i in $(seq 1 300); do echo "b $i"; done"#\n'
        f'    run r#"{gated(up, "resume2")}"#\n'
        '    run "echo done"\n'
        "}\n"
    )
    number = up.trigger(pipeline)
    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/s")
    expect(page.locator("#log .line").filter(has_text="a 30")).to_have_count(1)
    page.evaluate(MARK)
    up.gate("resume1").touch()
    page.evaluate("window.__old = BuildItLive.socket; window.__old.close()")
    expect(page.locator("#log .line .tx").filter(has_text=re.compile(r"^b 300$"))).to_have_count(1)
    expect(page.locator("#live-status")).to_have_text("live")
    assert page.evaluate("BuildItLive.socket !== window.__old")
    # Drop it again while the stage is about to write more: the page reconnects again.
    page.evaluate("window.__old = BuildItLive.socket; window.__old.close()")
    up.gate("resume2").touch()
    expect(page.locator("#log .line .tx").filter(has_text=re.compile(r"^done$"))).to_have_count(1)
    assert page.evaluate(MARKED)
    texts = page.locator("#log .line:not(.bi) .tx").all_inner_texts()
    assert texts == [f"a {i}" for i in range(1, 31)] + [f"b {i}" for i in range(1, 301)] + ["done"]
    numbers = [int(i[1:]) for i in page.locator("#log .line").evaluate_all("els => els.map(e => e.id)")]
    assert numbers == list(range(1, len(numbers) + 1))


def test_following_a_fast_log_keeps_the_dom_bounded(page: Page, up: Up) -> None:
    pipeline = up.pipeline(
        'pipeline "e2e-flood"\n'
        'stage "flood" {\n'
        '    run "echo start"\n'
        f'    run r#"{gated(up, "flood")}"#\n'
        '    run r#"seq 1 20000 | sed "s/^/flood /""#\n'
        "}\n"
    )
    number = up.trigger(pipeline)
    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/flood")
    expect(page.locator("#log .line .tx").filter(has_text=re.compile(r"^start$"))).to_have_count(1)
    page.evaluate(MARK)
    up.gate("flood").touch()
    expect(page.locator("#log .line:not(.bi) .tx").last).to_have_text("flood 20000")
    assert page.evaluate(MARKED)  # arrived live
    state = page.evaluate("BuildItLog.state()")
    assert state["lines"] <= 5000 and state["following"] and state["atEnd"]
    numbers = [int(i[1:]) for i in page.locator("#log .line").evaluate_all("els => els.map(e => e.id)")]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert page.locator(f"#L{numbers[-2]} .tx").inner_text() == "flood 20000"  # then the closing line
    # The follow view sits at the bottom; scrolling up stops following, the button resumes it.
    page.locator("#log").evaluate("el => { el.scrollTop = el.scrollHeight / 2; }")
    expect(page.get_by_role("button", name="Follow", exact=True)).to_have_attribute("aria-pressed", "false")
    page.get_by_role("button", name="Follow", exact=True).click()
    expect(page.get_by_role("button", name="Following")).to_have_attribute("aria-pressed", "true")
    assert page.locator("#log").evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight < 5")


def test_a_log_opened_before_its_stage_starts_follows_it(page: Page, up: Up) -> None:
    pipeline = up.pipeline(
        'pipeline "e2e-early"\n'
        f'stage "first" {{ run r#"{gated(up, "early")}"#; }}\n'
        'stage "second" needs="first" { run "echo second says hi"; }\n'
    )
    number = up.trigger(pipeline)
    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/second")
    expect(page.locator("#log-state")).to_have_text("Waiting for output…")
    expect(page.locator("#log-head")).not_to_have_attribute("data-status", "running")
    page.evaluate(MARK)
    up.gate("early").touch()
    expect(page.locator("#log .line .tx").filter(has_text=re.compile(r"^second says hi$"))).to_have_count(1)
    expect(page.locator("#log-head")).to_have_attribute("data-status", "succeeded")
    assert page.evaluate(MARKED)


def test_agents_page_drain_and_resume(page: Page, up: Up) -> None:
    page.goto("/agents")
    row = page.locator("tr", has=page.get_by_text("local", exact=True))
    expect(row.locator(".status")).to_contain_text("online")
    expect(row).to_contain_text("local")  # executor
    shot(page, "agents")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Drain agent local").click()
    expect(row.locator(".status")).to_contain_text("draining")
    page.get_by_role("button", name="Resume agent local").click()
    expect(row.locator(".status")).to_contain_text("online")


NAMELESS = """() => {
  const out = [];
  const controls = 'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]';
  for (const el of document.querySelectorAll(controls)) {
    if (el.closest('[hidden]') || el.getAttribute('tabindex') === '-1' && el.tagName !== 'MAIN') continue;
    if (el.tagName === 'MAIN') continue;
    const labelled = el.getAttribute('aria-labelledby');
    const name = (el.getAttribute('aria-label')
      || (labelled && document.getElementById(labelled)?.textContent)
      || (el.labels && el.labels.length && el.labels[0].textContent) || el.textContent || el.title
      || el.getAttribute('placeholder') || '').trim();
    if (!name) out.push(el.outerHTML.slice(0, 120));
  }
  return out;
}"""


def focused(page: Page) -> str:
    return str(
        page.evaluate(
            "() => { const e = document.activeElement;"
            " return (e.getAttribute('aria-label') || e.labels?.[0]?.textContent"
            " || e.textContent || '').trim(); }"
        )
    )


def test_keyboard_reaches_the_main_controls_and_every_control_is_named(page: Page, up: Up) -> None:
    status, body = up.request("GET", "/api/v1/pipelines")
    assert status == 200
    by_name: dict[str, Any] = {p["name"]: p["id"] for p in body["pipelines"]}
    live = by_name["e2e-live"]
    pages = [
        "/",
        "/pipelines",
        f"/pipelines/{live}",
        f"/pipelines/{live}/runs/1",
        f"/pipelines/{live}/runs/1/stages/work",
        "/agents",
    ]
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(NAMELESS) == [], path

    page.goto("/")
    page.keyboard.press("Tab")
    assert focused(page) == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        seen.append(focused(page))
    assert any(s.startswith("Status") for s in seen) and "Filter" in seen, seen
    assert any(s.startswith("e2e-") for s in seen), seen  # a pipeline link in the runs table

    page.goto(f"/pipelines/{live}/runs/1")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # skip the navigation (it grows with the caller's roles)
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        seen.append(focused(page))
    assert "Re-run" in seen and any(s.startswith("prep:") for s in seen), seen  # DAG boxes are links

    # A phone-sized screen gets the same pages, stacked.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "dashboard-phone")


def test_an_invalid_pipeline_file_shows_its_diagnostics_and_commit_text_stays_text(
    page: Page, up: Up
) -> None:
    from tests.integration.triggers.gitrepos import commit, make_repo

    repo = make_repo(up.workdir / "badrepo")
    # KDL 1.0 needs `;` before `}` in a one-line block: the run must show the diagnostic and its hint.
    commit(
        repo, {".buildit.kdl": 'pipeline "bad"\nstage "a" { run "x" }\n'}, "<script>window.__xss = 1</script>"
    )
    status, body = up.request("POST", "/api/v1/repos", {"url": str(repo), "name": "badrepo"})
    assert status == 201, body
    status, run = up.request("POST", f"/api/v1/repos/{body['id']}/runs", {"branch": "main"})
    assert status == 201, run
    page.goto(f"/pipelines/{run['pipeline_id']}/runs/{run['number']}")
    expect(page.locator("#run-live")).to_have_attribute("data-status", "error")
    diagnostics = page.locator(".diagnostics")
    expect(diagnostics).to_contain_text("The pipeline file is invalid")
    expect(diagnostics.locator("pre")).to_contain_text(".buildit.kdl:2:")
    expect(page.locator(".commit-message")).to_have_text("<script>window.__xss = 1</script>")
    assert page.evaluate("window.__xss === undefined")
    shot(page, "run-error")
    page.goto("/")
    expect(page.locator("tr.run-row", has=page.get_by_role("link", name="badrepo"))).to_contain_text(
        "<script>window.__xss = 1</script>"
    )
    assert page.evaluate("window.__xss === undefined")


UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def test_pages_work_under_the_strict_csp_with_no_violation(page: Page, up: Up) -> None:
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation', "
        "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    response = page.goto("/")
    assert response is not None
    headers = response.headers
    assert headers["content-security-policy"] == UI_CSP
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    expect(page.locator("#live-status")).to_have_text("live")  # the same-origin socket is accepted
    page.evaluate(MARK)
    pipeline = up.pipeline(
        'pipeline "e2e-csp"\nstage "colours" { run r#"printf \'\\033[31mred\\033[0m\\n\'"#; }\n'
    )
    number = up.trigger(pipeline)
    row = page.locator("tr.run-row", has=page.get_by_role("link", name="e2e-csp"))
    expect(row.locator(".status")).to_contain_text("succeeded")
    assert page.evaluate(MARKED)
    for path in (f"/pipelines/{pipeline}", f"/pipelines/{pipeline}/runs/{number}", "/agents"):
        page.goto(path)
        expect(page.locator("#live-status")).to_have_text("live")
    page.goto("/pipelines")
    expect(page.get_by_role("link", name="e2e-csp")).to_be_visible()
    page.goto(f"/pipelines/{pipeline}/runs/{number}/stages/colours")
    expect(page.locator("#log .line .tx span.ansi-red-fg")).to_have_text("red")
    assert page.evaluate("window.__csp") == []


def test_a_foreign_page_can_neither_write_nor_listen_through_the_operators_browser(
    browser: Any, up: Up
) -> None:
    """The probe of issue 11: a page on another site POSTs a "simple" text/plain JSON body to the
    API and opens /ws from the operator's browser. Both are refused; nothing is registered."""
    context = browser.new_context()
    evil = "http://evil.test/"
    blank = "<!doctype html><title>elsewhere</title>"
    context.route(evil, lambda route: route.fulfill(status=200, content_type="text/html", body=blank))
    try:
        page = context.new_page()
        page.goto(evil)
        before = {p["name"] for p in up.request("GET", "/api/v1/pipelines")[1]["pipelines"]}
        outcome = page.evaluate(
            """async (base) => {
                const body = JSON.stringify({config: 'pipeline "evil"\\nstage "s" { run "id"; }'});
                try {
                    await fetch(base + "/api/v1/pipelines", {method: "POST", mode: "no-cors",
                        headers: {"Content-Type": "text/plain"}, body});
                } catch (e) {}
                return await new Promise((resolve) => {
                    const ws = new WebSocket(base.replace("http", "ws") + "/ws");
                    ws.onopen = () => resolve("open");
                    ws.onerror = () => resolve("refused");
                });
            }""",
            up.base,
        )
        assert outcome == "refused"
        after = {p["name"] for p in up.request("GET", "/api/v1/pipelines")[1]["pipelines"]}
        assert after == before and "evil" not in after
    finally:
        context.close()
