"""What the run and log pages show beyond a run's JSON: why stages failed, and what a retry can fix.

Why a module: the run page (a tail of each failed stage's log, Retry where it can work) and the
log page (the same Retry, where the log opens) need the same facts, read the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

from agent.contract.types import StageStatus
from controller.deps import Deps
from controller.scheduling.planning import retry_blocker
from controller.web import logpage
from controller.web.format import FINISHED

#: How many lines of a failed stage's log the run page shows.
TAIL_LINES = 10
#: Stage statuses whose log tail the run page shows: why the run failed.
FAILED = frozenset({"failed", "timed_out", "error"})


def retryable(run: dict[str, Any]) -> set[str]:
    """Names of the run's stages a retry can work for now (the scheduler's own rule)."""
    statuses = {s["name"]: StageStatus(s["status"]) for s in run["stages"]}
    cancelling = bool(run["cancel_requested"]) and run["status"] not in FINISHED
    return {
        s["name"]
        for s in run["stages"]
        if retry_blocker(
            run["number"],
            s["name"],
            statuses[s["name"]],
            {n: statuses[n] for n in s["needs"] if n in statuses},
            cancelling,
        )
        is None
    }


def log_file(deps: Deps, run_id: UUID, stage: dict[str, Any], attempt: int) -> tuple[Path, int]:
    """Where an attempt's log is, and how many of its bytes are stored (acknowledged)."""
    path = deps.logs.find(run_id, stage["name"], attempt)
    if attempt == stage["attempt"]:
        return path, int(stage["log_size"])
    return path, path.stat().st_size if path.exists() else 0


async def failure_tails(deps: Deps, run: dict[str, Any], lines: int = TAIL_LINES) -> dict[str, str]:
    """The last `lines` lines of each failed stage's log (its current attempt), by stage name."""
    run_id = UUID(run["id"])
    failed = [s for s in run["stages"] if s["status"] in FAILED]

    def read() -> dict[str, str]:
        tails = {}
        for stage in failed:
            path, size = log_file(deps, run_id, stage, stage["attempt"])
            tails[stage["name"]] = logpage.page_before(path, size, None, lines).text
        return tails

    return await asyncio.to_thread(read) if failed else {}
