"""What a notification says: which event a finished run is, and the body sent (JSON or Slack).

Events, from the most specific: `fixed` (the run succeeded and the previous finished run of the
same pipeline and branch had failed), `failed` (the run failed or ended in error), `finished`
(every finished run, whatever its status). A notification names the events it wants; a run is
delivered to it once, as the most specific event it wants that the run is.

Pure: no I/O; `controller.notify.services` gathers the `Outcome` and stores the body.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

EVENTS = ("fixed", "failed", "finished")  # most specific first
FORMATS = ("json", "slack")
#: Run statuses that make a run "failed" (and a later success "fixed"); a cancel says neither.
BROKEN = frozenset({"failed", "error"})
#: Finished run statuses that say whether the pipeline works (the previous run's, for `fixed`).
VERDICTS = frozenset({"succeeded", "failed", "error"})


@dataclass(frozen=True)
class StageOutcome:
    """A stage that did not succeed: its name, status, exit code and message."""

    name: str
    status: str
    exit_code: int | None
    message: str


@dataclass(frozen=True)
class Outcome:
    """A finished run, as a notification tells it."""

    pipeline_id: str
    pipeline_name: str
    run_id: str
    number: int
    status: str
    branch: str
    sha: str
    message: str
    author: str
    trigger: str
    error: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    #: The run's page in the web UI.
    url: str
    #: The status of the previous finished run of the same pipeline and branch (None: no such run).
    previous_status: str | None = None
    failed_stages: tuple[StageOutcome, ...] = field(default_factory=tuple)


def matching_events(status: str, previous_status: str | None) -> frozenset[str]:
    """Every event a run that ended in `status` is (see the module docstring)."""
    events = {"finished"}
    if status in BROKEN:
        events.add("failed")
    if status == "succeeded" and previous_status in BROKEN:
        events.add("fixed")
    return frozenset(events)


def choose(wanted: Collection[str], matching: Collection[str]) -> str | None:
    """The most specific event in both (None: the notification wants none of them)."""
    return next((event for event in EVENTS if event in wanted and event in matching), None)


def render(format: str, outcome: Outcome, event: str) -> bytes:
    """The body to send: BuildIt's JSON document, or Slack's `{"text": ...}`."""
    if format == "slack":
        document: dict[str, Any] = {"text": slack_text(outcome, event)}
    else:
        document = json_document(outcome, event)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def json_document(outcome: Outcome, event: str) -> dict[str, Any]:
    """The JSON payload (documented in the README's *Notifications* section)."""
    return {
        "event": event,
        "pipeline": {"id": outcome.pipeline_id, "name": outcome.pipeline_name},
        "run": {
            "id": outcome.run_id,
            "number": outcome.number,
            "status": outcome.status,
            "branch": outcome.branch,
            "commit": outcome.sha,
            "message": outcome.message,
            "author": outcome.author,
            "trigger": outcome.trigger,
            "error": outcome.error,
            "created_at": outcome.created_at,
            "started_at": outcome.started_at,
            "finished_at": outcome.finished_at,
            "url": outcome.url,
        },
        "previous_status": outcome.previous_status,
        "failed_stages": [asdict(stage) for stage in outcome.failed_stages],
    }


_ICONS = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "error": ":warning:",
    "cancelled": ":no_entry_sign:",
}


def _escape(text: str) -> str:
    """Slack's mrkdwn needs &, < and > escaped in text that is not markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(outcome: Outcome, event: str) -> str:
    """One message for a Slack (or Mattermost, Rocket.Chat) incoming webhook."""
    icon = _ICONS.get(outcome.status, ":grey_question:")
    what = {
        "fixed": "is fixed",
        "failed": "failed",
    }.get(event, outcome.status.replace("_", " "))
    where = f" on `{_escape(outcome.branch)}`" if outcome.branch else ""
    commit = f" ({outcome.sha[:12]})" if outcome.sha else ""
    title = f"*{_escape(outcome.pipeline_name)}* <{outcome.url}|run {outcome.number}>"
    lines = [f"{icon} {title} {what}{where}{commit}"]
    subject = outcome.message.strip().splitlines()[0] if outcome.message.strip() else ""
    if subject:
        lines.append(f"> {_escape(subject[:200])}")
    for stage in outcome.failed_stages[:5]:
        code = f", exit code {stage.exit_code}" if stage.exit_code is not None else ""
        detail = f": {_escape(stage.message[:200])}" if stage.message else ""
        lines.append(f"• {_escape(stage.name)} {stage.status}{code}{detail}")
    if outcome.error:
        lines.append(_escape(outcome.error[:300]))
    return "\n".join(lines)
