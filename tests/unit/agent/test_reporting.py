"""ReportBound: waiting to report has no end while the agent serves, `--report-wait` once it stops."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.contract.types import StageStatus, StageUpdate
from agent.pending import PendingReport, load_pending
from agent.reporting import ReportBound


async def test_no_end_while_serving_then_the_wait_from_the_later_of_stop_and_report() -> None:
    bound = ReportBound(0.2, address="ci:9090")
    loop = asyncio.get_running_loop()
    began = loop.time() - 3600  # a stage that has been trying to report for an hour
    assert not bound.bounded and not bound.expired(began)
    bound.stopping()
    assert bound.bounded and not bound.expired(began)  # the wait counts from the stop
    assert not bound.expired(loop.time() + 1)  # ... or from a report begun later
    await asyncio.sleep(0.25)
    assert bound.expired(began)
    bound.abort()
    assert bound.expired(loop.time() + 3600)  # a second signal: no more waiting at all


async def test_it_says_once_that_a_result_waits_and_once_more_when_the_stop_bounds_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound = ReportBound(60, address="ci:9090")
    caplog.set_level(logging.INFO, "agent")
    noted = bound.note_unreachable("L1", "build", StageStatus.SUCCEEDED, "")
    assert noted == bound.note_unreachable("L1", "build", StageStatus.SUCCEEDED, noted) == "waiting"
    bound.stopping()
    noted = bound.note_unreachable("L1", "build", StageStatus.SUCCEEDED, noted)
    assert noted == bound.note_unreachable("L1", "build", StageStatus.SUCCEEDED, noted) == "bounded"
    assert [r.getMessage() for r in caplog.records] == [
        "lease L1 (stage 'build', succeeded): the controller at ci:9090 is unreachable; reporting it when it "
        "is back",
        "lease L1 (stage 'build', succeeded): the controller at ci:9090 is unreachable; the agent is "
        "stopping: waiting up to 60s to report it, then keeping it for the next start",
    ]


async def test_a_result_given_up_is_kept_in_the_state_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bound = ReportBound(1, address="ci:9090", state_dir=tmp_path)
    kept = PendingReport("ci:9090", "r", "s", "build", 1, StageUpdate("L1", StageStatus.FAILED, exit_code=2))
    bound.keep(kept)
    assert bound.kept == 1 and load_pending(tmp_path) == [kept]
    assert "result kept in" in caplog.text and "pending-reports.json" in caplog.text
    (tmp_path / "pending-reports.json").write_text("broken")
    bound.keep(kept)  # a broken file: said in the log, not a crash
    assert bound.kept == 1 and "cannot keep its result" in caplog.text
