"""What `trigger --follow` prints per stage change, and the exit codes of a followed result
(controller.cli.follow); the live socket itself is tested end to end in tests/integration/cli."""

from __future__ import annotations

import io

from rich.console import Console

from controller.cli.follow import RunProgress, exit_code


def progress() -> tuple[RunProgress, io.StringIO]:
    out = io.StringIO()
    return RunProgress(Console(file=out, width=200, highlight=False, color_system=None)), out


def stage(name: str, status: str, message: str = "", **extra: str) -> dict[str, str]:
    return {"name": name, "status": status, "message": message, **extra}


def test_each_change_is_printed_once_and_quiet_states_not_at_all() -> None:
    shown, out = progress()
    shown.stage(stage("build", "pending"))
    shown.stage(stage("build", "queued"))
    shown.stage(stage("build", "running", agent="worker-1"))
    shown.stage(stage("build", "running", agent="worker-1"))  # the same again: nothing
    shown.stage(
        stage(
            "build",
            "failed",
            "exit code 7",
            started_at="2026-12-03T12:00:00+00:00",
            finished_at="2026-12-03T12:00:12+00:00",
        )
    )
    shown.stage(stage("deploy", "skipped", "skipped: needs build"))
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # without the clock
    assert lines == [
        "build        ▶ running on worker-1",
        "build        ✘ failed in 12s: exit code 7",
        "deploy       – skipped: needs build",
    ]


def test_a_queued_stage_is_shown_when_the_controller_says_why_it_waits() -> None:
    shown, out = progress()
    shown.stage(stage("win", "queued", "no connected agent has os=windows"))
    shown.stage(stage("win", "queued", "all 3 matching agents are busy"))
    text = out.getvalue()
    assert "win          · queued: no connected agent has os=windows" in text
    assert "all 3 matching agents are busy" in text


def test_names_and_messages_are_shown_as_written() -> None:
    shown, out = progress()
    shown.stage(stage("[bold]x", "failed", "exit code 1 [/]"))
    assert "[bold]x" in out.getvalue() and "exit code 1 [/]" in out.getvalue()


def test_exit_codes() -> None:
    assert [exit_code(s) for s in ("succeeded", "failed", "timed_out", "cancelled", "error")] == [
        0,
        1,
        1,
        3,
        4,
    ]
    assert exit_code("something new") == 1  # never 0 for a result it does not know
