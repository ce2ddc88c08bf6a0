"""The newcomer's first hour, start to end, in a real browser (issue 12's "done when").

What `make run` does, in a temp dir: the demo repository made by `scripts/demo-repo.sh sync`, then
`buildit up --pipelines examples --repo .buildit/demo-repo --trigger demo-repo` (free ports, the
local executor). The newcomer follows the link the banner ends with, signs in with the generated
password, sees the demo run green; commits a change that breaks a test; sees the run fail on the
dashboard, follows the failed stage to its log, which opens at the failing command; commits the
fix; and sees the next run green. (`make install`'s venv is this test run's own.)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import FINISHED, Up, shot, signed_in
from tests.integration.fleet.harness import BUILDIT, Proc, wait_for
from tests.integration.triggers.gitrepos import commit
from tests.support.credentials import admin_password, issue_key

ROOT = Path(__file__).resolve().parents[2]
RUN_LINK = re.compile(r"(http://127\.0\.0\.1:\d+)(/pipelines/([0-9a-f-]{36})/runs/(\d+))")
BROKEN_STEP = 'run "echo unit tests ok"'


def _make_run(workdir: Path) -> Proc:
    """`make run`'s two steps, from `workdir` (which holds a copy of examples/)."""
    shutil.copytree(ROOT / "examples", workdir / "examples")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo-repo.sh"), "sync", ".buildit/demo-repo"],
        cwd=workdir,
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    args = ["up", "--pipelines", "examples", "--repo", ".buildit/demo-repo", "--trigger", "demo-repo"]
    return Proc([BUILDIT, *args, "--http-port", "0", "--grpc-port", "0", "--executor", "local"], env, workdir)


def _finished(up: Up, pipeline: str, number: int) -> dict[str, Any]:
    """Run `number` once the watcher made it (a commit starts it within milliseconds) and it ended."""

    def ended() -> dict[str, Any] | None:
        status, body = up.request("GET", f"/api/v1/pipelines/{pipeline}/runs/{number}")
        return body if status == 200 and body["status"] in FINISHED else None

    return dict(wait_for(ended, 120, f"run {number} of the demo repository to end"))


def test_fresh_start_green_run_break_it_find_why_fix_it_green_again(
    tmp_path: Path, browser: Any, chromium_path: str
) -> None:
    proc = _make_run(tmp_path)
    try:
        banner = wait_for(lambda: RUN_LINK.search(proc.output), 90, "the banner's link to the demo run")
        base, run_page, pipeline, number = banner.groups()
        assert int(number) == 1
        # The link to the run is the last thing printed: the newcomer's next step.
        assert proc.output.rstrip().splitlines()[-1].rstrip().endswith(run_page), proc.output
        up = Up(proc, base, tmp_path, password=admin_password(tmp_path / ".buildit"))
        up.key = issue_key(base, "admin", up.password)
        repo = tmp_path / ".buildit" / "demo-repo"

        with signed_in(browser, up, "admin", up.password) as page:
            page.goto(run_page)
            expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=90_000)
            shot(page, "newcomer-1-demo-green")

            # A change that breaks the unit tests: the watched repository runs it on its own.
            pipeline_file = (repo / ".buildit.kdl").read_text()
            assert BROKEN_STEP in pipeline_file
            commit(
                repo,
                {
                    ".buildit.kdl": pipeline_file.replace(BROKEN_STEP, 'run "sh check.sh"'),
                    "check.sh": "echo checking the widget\necho 'expected 2, got 3' >&2\nexit 1\n",
                },
                "Add the widget check",
            )
            broken = _finished(up, pipeline, 2)
            assert broken["status"] == "failed", broken

            # On the dashboard the failed run names its failed stage; its log opens at the command.
            page.goto("/")
            failed_link = page.locator(
                f'a.failed-stage[href="/pipelines/{pipeline}/runs/2/stages/test-unit"]'
            )
            expect(failed_link).to_have_text("✗ test-unit")
            failed_link.click()
            failed = page.locator("#log .line.cmd-failed")
            expect(failed.locator(".tx")).to_have_text("$ sh check.sh")
            expect(failed).to_be_in_viewport()
            expect(page.locator("#stage-message")).to_have_text(
                'command 1 of 1 failed: "sh check.sh" exited with 1'
            )
            expect(page.locator("#log .line").filter(has_text="expected 2, got 3")).to_be_visible()
            shot(page, "newcomer-2-why-it-failed")

            # The fix, committed: the next run is green.
            commit(repo, {"check.sh": "echo checking the widget\nexit 0\n"}, "Fix the widget")
            fixed = _finished(up, pipeline, 3)
            assert fixed["status"] == "succeeded", fixed
            page.goto(f"/pipelines/{pipeline}/runs/3")
            expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded")
            expect(page.locator(".failure")).to_have_count(0)
            shot(page, "newcomer-3-fixed")
    finally:
        proc.signal(signal.SIGINT)
        proc.wait(60)
