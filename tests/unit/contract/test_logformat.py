"""agent.contract.logformat: the line format, and which stage a line names."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import pytest

from agent.contract import logformat
from agent.contract.logformat import LineFormatter, StageRef, about, bind_stage, stage_ref
from agent.contract.types import StageLease, StageSpec

LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go through LineFormatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(LineFormatter())
    logger = logging.getLogger("tests.logformat")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)


def lease(env: dict[str, str] | None = None) -> StageLease:
    spec = StageSpec(name="lint", index=0, commands=("true",), env=env or {})
    return StageLease("abc123", "run-id", "stage-id", 2, None, spec)


def test_a_line_has_time_level_logger_and_message(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    logger.warning("disk %s is full", "/tmp")
    assert re.fullmatch(LINE + r"WARNING tests\.logformat: disk /tmp is full\n", buffer.getvalue())


def test_a_line_about_a_stage_names_pipeline_run_and_stage(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    ref = stage_ref(lease({"BUILDIT_PIPELINE_NAME": "my-app", "BUILDIT_RUN_NUMBER": "7"}))
    logger.info("stage succeeded", extra=about(ref))
    assert buffer.getvalue().endswith(
        ": stage succeeded  pipeline=my-app run=7 stage=lint attempt=2 lease=abc123\n"
    )


def test_values_with_spaces_or_equals_signs_are_quoted() -> None:
    ref = StageRef(pipeline="my app", run="3", stage='a="b"')
    assert ref.text == 'pipeline="my app" run=3 stage="a=\\"b\\""'
    assert StageRef(pipeline="", run="1", stage="s").text == 'pipeline="" run=1 stage=s'


def test_a_lease_without_the_stage_variables_says_so() -> None:
    assert stage_ref(lease()).text.startswith("pipeline=? run=? stage=lint")


async def test_a_bound_stage_names_every_line_of_its_task_and_of_the_tasks_it_starts(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    one = StageRef(pipeline="p", run="1", stage="one")
    two = StageRef(pipeline="p", run="1", stage="two")

    async def child() -> None:
        logger.info("from a child task")

    async def run(ref: StageRef) -> None:
        bind_stage(ref)
        await asyncio.sleep(0)
        logger.info("working")
        await asyncio.create_task(child())

    await asyncio.gather(run(one), run(two))
    logger.info("outside")
    lines = buffer.getvalue().splitlines()
    assert sum(line.endswith("working  " + one.text) for line in lines) == 1
    assert sum(line.endswith("working  " + two.text) for line in lines) == 1
    assert sum(line.endswith("from a child task  " + one.text) for line in lines) == 1
    assert sum(line.endswith("from a child task  " + two.text) for line in lines) == 1
    assert lines[-1].endswith(": outside")  # the binding ended with the tasks


def test_an_explicit_stage_wins_over_the_bound_one(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured

    async def run() -> None:
        bind_stage(StageRef(pipeline="p", run="1", stage="bound"))
        logger.info("x", extra=about(StageRef(pipeline="p", run="2", stage="named")))

    asyncio.run(run())
    assert buffer.getvalue().rstrip().endswith("x  pipeline=p run=2 stage=named")


def test_a_traceback_follows_its_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed")
    first, *rest = buffer.getvalue().splitlines()
    assert first.endswith(": it failed") and rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom"


def test_the_level_comes_from_buildit_log_level() -> None:
    assert logformat.level_from_env(logging.WARNING, {}) == logging.WARNING
    assert logformat.level_from_env(logging.WARNING, {"BUILDIT_LOG_LEVEL": " Debug "}) == logging.DEBUG
    wanted = r"BUILDIT_LOG_LEVEL must be one of debug, info, warning, error, got 'loud'"
    with pytest.raises(ValueError, match=wanted):
        logformat.level_from_env(logging.INFO, {"BUILDIT_LOG_LEVEL": "loud"})


def test_configure_installs_one_handler_however_often_it_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    for handler in saved[0]:
        root.removeHandler(handler)
    try:
        monkeypatch.setenv("BUILDIT_LOG_LEVEL", "error")
        out = io.StringIO()
        logformat.configure(logging.INFO, out)
        logformat.configure(logging.INFO, out)
        assert len(root.handlers) == 1 and root.level == logging.ERROR
        logging.getLogger("tests.configure").error("once")
        assert out.getvalue().count("once") == 1
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
