"""Stage results an agent could not report before it stopped, kept in its state dir for next time.

Why: an agent told to stop while its controller is down would otherwise wait for it without
bound, or lose what its stages did. Once the wait (`--report-wait`) is over, each unreported
result — the final status and the log chunks the controller has not acknowledged, already masked —
goes to `<state dir>/pending-reports.json` (0600, written atomically like the token). At the next
start the agent holds those leases again (it lists them when it connects, so the controller keeps
them while their lease lives), sends the logs and then the status through the usual fenced calls,
and forgets each one once the controller took it, or said the lease is no longer this agent's.

Only this agent's controller gets them (the address is kept with them); results for another
controller stay in the file untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from agent.contract.types import LogChunk, LogLine, StageStatus, StageUpdate
from agent.state import StateError, write_private

__all__ = ["PENDING_FILE", "PendingReport", "forget_pending", "keep_pending", "load_pending"]

PENDING_FILE: Final = "pending-reports.json"


@dataclass(frozen=True)
class PendingReport:
    """One stage's result not yet taken by the controller."""

    controller: str
    run_id: str
    stage_run_id: str
    stage: str
    attempt: int
    update: StageUpdate
    #: Log chunks not acknowledged when it was kept, in order (their text is masked already).
    chunks: tuple[LogChunk, ...] = ()

    @property
    def lease_id(self) -> str:
        """The lease the result is reported under (the controller's fencing token)."""
        return self.update.lease_id


def load_pending(state_dir: Path) -> list[PendingReport]:
    """The results kept in `state_dir` (none when there is no file).

    Raises StateError for a file that is there but unreadable: silently dropping results a stop
    kept would lose work, so a person should look (the message says where).
    """
    path = state_dir / PENDING_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return [_report(item) for item in json.loads(raw)["reports"]]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise StateError(
            f"{path} is not a valid file of kept stage results; delete it to drop them "
            "(their stages are then run again by the controller)"
        ) from None


def keep_pending(state_dir: Path, report: PendingReport) -> Path:
    """Add (or replace) one result in the file; returns the file's path."""
    reports = [r for r in load_pending(state_dir) if r.lease_id != report.lease_id]
    _write(state_dir, [*reports, report])
    return state_dir / PENDING_FILE


def forget_pending(state_dir: Path, lease_id: str) -> None:
    """Drop one result (reported, or no longer this agent's to report); the file goes when empty."""
    reports = load_pending(state_dir)
    left = [r for r in reports if r.lease_id != lease_id]
    if len(left) == len(reports):
        return
    if left:
        _write(state_dir, left)
    else:
        (state_dir / PENDING_FILE).unlink(missing_ok=True)


def _write(state_dir: Path, reports: list[PendingReport]) -> None:
    data = {"reports": [_json(r) for r in reports]}
    write_private(state_dir, PENDING_FILE, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def _json(report: PendingReport) -> dict[str, Any]:
    update = report.update
    return {
        "controller": report.controller,
        "run_id": report.run_id,
        "stage_run_id": report.stage_run_id,
        "stage": report.stage,
        "attempt": report.attempt,
        "lease_id": update.lease_id,
        "status": update.status.value,
        "exit_code": update.exit_code,
        "message": update.message,
        "started_at": _iso(update.started_at),
        "finished_at": _iso(update.finished_at),
        "chunks": [{"seq": c.seq, "lines": [line.text for line in c.lines]} for c in report.chunks],
    }


def _report(item: dict[str, Any]) -> PendingReport:
    lease_id = str(item["lease_id"])
    exit_code = item.get("exit_code")
    return PendingReport(
        controller=str(item["controller"]),
        run_id=str(item["run_id"]),
        stage_run_id=str(item["stage_run_id"]),
        stage=str(item["stage"]),
        attempt=int(item["attempt"]),
        update=StageUpdate(
            lease_id,
            StageStatus(item["status"]),
            exit_code=None if exit_code is None else int(exit_code),
            message=str(item.get("message", "")),
            started_at=_time(item.get("started_at")),
            finished_at=_time(item.get("finished_at")),
        ),
        chunks=tuple(
            LogChunk(lease_id, int(c["seq"]), tuple(LogLine(str(t)) for t in c["lines"]))
            for c in item.get("chunks", ())
        ),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None
