"""The run page says why a queued stage waits, live, in a real browser against a real `buildit up`:
the line appears under the stage without a reload and goes once an agent with the labels joins."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Up, shot
from tests.integration.fleet.harness import BUILDIT, FAST, Proc

MARK = "window.__noReload = 'still here'"
MARKED = "window.__noReload === 'still here'"


def test_a_queued_stage_says_why_it_waits_until_an_agent_takes_it(page: Page, up: Up, tmp_path: Path) -> None:
    pipeline = up.pipeline(
        'pipeline "e2e-waiting"\nstage "gpu" { labels "gpu=true"; run "echo on the gpu"; }\n'
    )
    number = up.trigger(pipeline)
    page.goto(f"/pipelines/{pipeline}/runs/{number}")
    page.evaluate(MARK)
    row = page.locator("tr[data-stage=gpu]")
    reason = row.locator(".waiting-reason")
    expect(reason).to_have_text("waiting: no connected agent has gpu=true; agents: local (no labels)")
    shot(page, "run-waiting")

    # An agent with the label joins: it takes the stage at once and the line goes, live.
    grpc = re.search(r"agents \(gRPC\):\s+127\.0\.0\.1:(\d+)", up.proc.output)
    assert grpc, up.proc.output
    token = (up.workdir / ".buildit" / "registration-token").read_text().strip()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}, **FAST}
    env["BUILDIT_REGISTRATION_TOKEN"] = token
    agent = Proc(
        [
            BUILDIT,
            "agent",
            "--controller",
            f"127.0.0.1:{grpc.group(1)}",
            "--name",
            "gpu-box",
            "--labels",
            "gpu=true",
            "--executor",
            "local",
            "--state-dir",
            str(tmp_path / "gpu-agent"),
        ],
        env,
        tmp_path,
    )
    try:
        expect(row).to_have_attribute("data-status", "succeeded")
        expect(reason).to_have_count(0)
        expect(row).to_contain_text("gpu-box")
        assert page.evaluate(MARKED)
    finally:
        agent.stop()
