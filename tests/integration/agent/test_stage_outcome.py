"""Why a stage failed, at a glance: a real controller and agent (local executor) on loopback.

The stage's message names the command it failed in and its exit code, the log's last line is
BuildIt's closing line saying the same, and each command's header is a marked line no output can
pass for (agent.contract.logmarks). Secrets in a command's text stay masked in the message, also
where the quote of the command is cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.contract import logmarks
from tests.integration.fleet.harness import Agent, Controller, wait_for

FAILS_SECOND = (
    'pipeline "fails-second"\n'
    'stage "test" {\n'
    '    run "echo preparing"\n'
    # Output that imitates BuildIt's closing line: it stays output.
    "    run r#\"printf '\\033_buildit;end;succeeded;0;3\\033\\\\all good\\n'; "
    'echo about to fail; exit 4"#\n'
    '    run "echo never runs"\n'
    "}\n"
)
VALUE = "s3cr3t-V4lue-9q8w"
# The value sits across the 60th character of the command, where its quote in the message is cut.
PREFIX = "echo " + "x" * 48 + " "
USES_SECRET = (
    'pipeline "quotes-secret"\n'
    'stage "check" {\n'
    f'    run "{PREFIX}{VALUE}; test -z \\"${{secrets.API_TOKEN}}\\""\n'
    "}\n"
)


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    controller = Controller(tmp_path, database_url).start()
    agent = Agent(tmp_path, controller, "solo")
    try:
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")
        yield controller
    finally:
        agent.stop()
        controller.stop()


def test_the_message_and_the_closing_line_name_the_failed_command(fleet: Controller) -> None:
    controller = fleet
    pipeline = controller.create_pipeline(FAILS_SECOND)
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    (stage,) = run["stages"]
    second = "printf '\\033_buildit;end;succeeded;0;3\\033\\\\all good\\n'; echo about to fail; exit 4"
    message = f'command 2 of 3 failed: "{second[:59].rstrip()}…" exited with 4'
    assert (stage["status"], stage["exit_code"], stage["message"]) == ("failed", 4, message)

    lines = controller.raw_log(pipeline, number, "test").split("\n")
    assert lines.pop() == ""  # the log ends with a newline
    assert lines == [
        logmarks.line(logmarks.CMD, 1, 3, text="$ echo preparing"),
        "preparing",
        logmarks.line(logmarks.CMD, 2, 3, text=f"$ {second}"),
        # The imitation is shown, but with its escape replaced: it is no marker.
        "\u241b_buildit;end;succeeded;0;3\x1b\\all good",
        "about to fail",
        logmarks.line(logmarks.END, "failed", 2, 3, text=f"buildit: {message}"),
    ]
    closing = logmarks.parse(lines[-1])
    assert closing is not None and (closing.kind, closing.fields) == ("end", ("failed", "2", "3"))
    assert [logmarks.parse(line) is not None for line in lines] == [True, False, True, False, False, True]
    # A terminal shows the text alone.
    assert logmarks.plain(lines[-1]) == f"buildit: {message}"


def test_a_succeeded_stage_closes_its_log_too(fleet: Controller) -> None:
    controller = fleet
    pipeline = controller.create_pipeline('pipeline "fine"\nstage "ok" { run "echo fine"; }\n')
    number = controller.trigger(pipeline)
    (stage,) = controller.wait_run(pipeline, number)["stages"]
    assert (stage["status"], stage["message"]) == ("succeeded", "")
    last = controller.raw_log(pipeline, number, "ok").splitlines()[-1]
    assert last == logmarks.line(logmarks.END, "succeeded", 0, 1, text="buildit: stage succeeded (1 command)")


def test_a_secret_in_the_command_text_is_masked_before_the_quote_is_cut(fleet: Controller) -> None:
    controller = fleet
    status, body, _ = controller.request("PUT", "/api/v1/secrets/API_TOKEN", {"value": VALUE})
    assert status == 201, body
    pipeline = controller.create_pipeline(USES_SECRET)
    number = controller.trigger(pipeline)
    (stage,) = controller.wait_run(pipeline, number)["stages"]
    assert stage["status"] == "failed" and stage["exit_code"] == 1
    # In the command, ${secrets.API_TOKEN} became a variable reference; the literal value is masked.
    masked = f'{PREFIX}***; test -z "${{BUILDIT_SECRET_API_TOKEN}}"'
    assert stage["message"] == f'command 1 of 1 failed: "{masked[:59].rstrip()}…" exited with 1'
    raw = controller.raw_log(pipeline, number, "check")
    assert VALUE[:5] not in stage["message"] and VALUE[:5] not in raw
    assert raw.splitlines()[-1].endswith(f"buildit: {stage['message']}")
