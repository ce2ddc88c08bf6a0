"""LogStore.remove_run: a deleted run's log files go, every attempt, and nothing of other runs."""

from __future__ import annotations

import uuid
from pathlib import Path

from controller.scheduling.logs import LogStore


def test_remove_run_deletes_each_stage_and_attempt_and_only_that_run(tmp_path: Path) -> None:
    logs = LogStore(tmp_path / "logs")
    doomed, kept = uuid.uuid4(), uuid.uuid4()
    for run in (doomed, kept):
        for stage, attempts in (("build", 2), ("test", 1)):
            for attempt in range(1, attempts + 1):
                logs.append(logs.path(run, stage, attempt), 0, b"line\n")
    legacy = tmp_path / "logs" / str(doomed)  # the per-run directory of older versions
    legacy.mkdir()
    (legacy / "build.1.log").write_text("old\n")

    assert logs.remove_run(doomed, {"build": 2, "test": 1}) == 4
    assert not legacy.exists()
    assert not any(logs.path(doomed, s, a).exists() for s, a in (("build", 1), ("build", 2), ("test", 1)))
    assert all(logs.path(kept, s, a).exists() for s, a in (("build", 1), ("build", 2), ("test", 1)))
    assert logs.remove_run(doomed, {"build": 2}) == 0
