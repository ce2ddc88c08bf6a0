"""The terminal reporter: prefixed lines, progress for long stages, the summary table."""

from __future__ import annotations

import asyncio
import io

from agent.contract.types import StageStatus
from controller.localrun.console import ConsoleReporter, format_duration
from controller.localrun.execute import StageOutcome


def test_lines_are_prefixed_and_aligned() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(out, ["a", "long-name"], interactive=False)
    reporter.line("a", "hello")
    reporter.line("long-name", "world")
    assert out.getvalue().splitlines() == ["[a]         hello", "[long-name] world"]


async def test_long_stages_show_progress_in_non_interactive_output() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(out, ["build"], heartbeat_s=0.2, interactive=False)
    reporter.start()
    reporter.stage_started("build", 1)
    await asyncio.sleep(0.7)
    reporter.stage_finished(StageOutcome("build", StageStatus.SUCCEEDED, 0, attempts=1, duration_s=0.7))
    beats = [line for line in out.getvalue().splitlines() if "still running" in line]
    reporter.stop()
    assert len(beats) >= 2
    assert beats[0].startswith("[build] … still running (")
    # Once finished, a stage is no longer reported as running.
    await asyncio.sleep(0.3)
    assert len([line for line in out.getvalue().splitlines() if "still running" in line]) == len(beats)


async def test_interactive_footer_names_running_stages() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(out, ["a", "b"], interactive=True)
    reporter.stage_started("a", 1)
    reporter.stage_started("b", 2)
    footer = reporter._footer()
    text = str(getattr(footer, "text", footer))
    assert "running: a" in text and ", b" in text
    assert "[b] ▶ started (attempt 2)" in out.getvalue()


def test_summary_table_lists_every_stage_with_status_and_exit_code() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(out, ["a", "b"], interactive=False)
    reporter.summary(
        [
            StageOutcome("a", StageStatus.FAILED, 3, attempts=2, duration_s=1.5),
            StageOutcome("b", StageStatus.SKIPPED),
        ],
        2.0,
    )
    rows = [line.split() for line in out.getvalue().splitlines() if line.strip()]
    assert rows[0] == ["stage", "status", "duration", "attempts", "exit"]
    assert rows[1] == ["a", "✘", "failed", "1.5s", "2", "3"]
    assert rows[2] == ["b", "–", "skipped", "-", "-"]
    assert rows[3] == ["2", "stages:", "1", "failed,", "1", "skipped", "in", "2.0s"]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.0123, 3.21, 125, 3720)] == ["12ms", "3.2s", "2m05s", "1h02m"]
