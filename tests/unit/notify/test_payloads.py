"""controller.notify.payloads: which event a run is, and what is sent."""

from __future__ import annotations

import json

import pytest

from controller.notify.payloads import Outcome, StageOutcome, choose, matching_events, render

ALL = ("fixed", "failed", "finished")


@pytest.mark.parametrize(
    ("status", "previous", "wanted", "event"),
    [
        ("failed", None, ALL, "failed"),
        ("error", "succeeded", ALL, "failed"),
        ("succeeded", "failed", ALL, "fixed"),
        ("succeeded", "error", ("failed", "finished"), "finished"),
        ("succeeded", "succeeded", ALL, "finished"),
        ("succeeded", None, ("fixed", "failed"), None),
        ("cancelled", "failed", ALL, "finished"),
        ("cancelled", None, ("failed",), None),
    ],
)
def test_a_run_is_sent_as_the_most_specific_event_wanted(
    status: str, previous: str | None, wanted: tuple[str, ...], event: str | None
) -> None:
    assert choose(wanted, matching_events(status, previous)) == event


OUTCOME = Outcome(
    pipeline_id="p1",
    pipeline_name="web <app>",
    run_id="r1",
    number=7,
    status="failed",
    branch="main",
    sha="0123456789abcdef0123456789abcdef01234567",
    message="Fix the <thing> & more\n\nbody",
    author="ada",
    trigger="watch",
    error="",
    created_at=None,
    started_at=None,
    finished_at=None,
    url="http://ci.example/pipelines/p1/runs/7",
    previous_status="succeeded",
    failed_stages=(StageOutcome("test", "failed", 2, "command 'pytest' exited 2"),),
)


def test_the_json_document() -> None:
    document = json.loads(render("json", OUTCOME, "failed"))
    assert document["event"] == "failed" and document["pipeline"] == {"id": "p1", "name": "web <app>"}
    assert document["run"]["number"] == 7 and document["run"]["commit"] == OUTCOME.sha
    assert document["failed_stages"] == [
        {"name": "test", "status": "failed", "exit_code": 2, "message": "command 'pytest' exited 2"}
    ]


def test_the_slack_message_escapes_what_users_wrote() -> None:
    document = json.loads(render("slack", OUTCOME, "failed"))
    assert list(document) == ["text"]
    first, subject, stage = document["text"].splitlines()
    assert first == (
        ":x: *web &lt;app&gt;* <http://ci.example/pipelines/p1/runs/7|run 7> failed on `main` (0123456789ab)"
    )
    assert subject == "> Fix the &lt;thing&gt; &amp; more"
    assert stage == "• test failed, exit code 2: command 'pytest' exited 2"
