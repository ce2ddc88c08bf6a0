"""Stage results kept for the next start: private, atomic, round-tripped exactly, forgotten one by one."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.contract.types import LogChunk, LogLine, StageStatus, StageUpdate
from agent.pending import PENDING_FILE, PendingReport, forget_pending, keep_pending, load_pending
from agent.state import StateError


def report(lease_id: str, status: StageStatus = StageStatus.SUCCEEDED) -> PendingReport:
    started = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    return PendingReport(
        controller="ci:9090",
        run_id="run-1",
        stage_run_id=f"stage-{lease_id}",
        stage="build",
        attempt=2,
        update=StageUpdate(
            lease_id, status, exit_code=0, message="", started_at=started, finished_at=started
        ),
        chunks=(
            LogChunk(lease_id, 4, (LogLine("line four\nline five"),)),
            LogChunk(lease_id, 5, (LogLine("naïve ✓ ***"),)),
        ),
    )


def test_kept_results_round_trip_in_a_private_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    assert load_pending(state_dir) == []
    path = keep_pending(state_dir, report("a"))
    keep_pending(state_dir, report("b", StageStatus.FAILED))
    assert path == state_dir / PENDING_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert load_pending(state_dir) == [report("a"), report("b", StageStatus.FAILED)]
    # Keeping a lease again replaces it rather than reporting it twice.
    keep_pending(state_dir, report("a", StageStatus.ERROR))
    assert [(r.lease_id, r.update.status) for r in load_pending(state_dir)] == [
        ("b", StageStatus.FAILED),
        ("a", StageStatus.ERROR),
    ]
    assert [p.name for p in state_dir.iterdir()] == [PENDING_FILE]  # no temporary file left


def test_forgetting_drops_one_and_the_file_with_the_last(tmp_path: Path) -> None:
    keep_pending(tmp_path, report("a"))
    keep_pending(tmp_path, report("b"))
    forget_pending(tmp_path, "unknown")
    forget_pending(tmp_path, "a")
    assert [r.lease_id for r in load_pending(tmp_path)] == ["b"]
    forget_pending(tmp_path, "b")
    assert not (tmp_path / PENDING_FILE).exists()
    forget_pending(tmp_path, "b")  # nothing to forget: no error


@pytest.mark.parametrize("content", ["not json", "{}", '{"reports": [{"lease_id": "x"}]}', '{"reports": 3}'])
def test_an_unusable_file_is_an_error_that_says_how_to_recover(tmp_path: Path, content: str) -> None:
    (tmp_path / PENDING_FILE).write_text(content)
    with pytest.raises(StateError) as refused:
        load_pending(tmp_path)
    assert str(tmp_path / PENDING_FILE) in str(refused.value) and "delete it" in str(refused.value)


def test_the_file_holds_what_a_person_can_read(tmp_path: Path) -> None:
    keep_pending(tmp_path, report("a"))
    [item] = json.loads((tmp_path / PENDING_FILE).read_text())["reports"]
    assert (item["stage"], item["status"], item["controller"]) == ("build", "succeeded", "ci:9090")
    assert item["chunks"][0] == {"seq": 4, "lines": ["line four\nline five"]}
