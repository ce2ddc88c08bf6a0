"""How long a stopping agent waits for an unreachable controller to take its stages' results.

Why: while it serves, an agent waits for its controller as long as it takes (a restarting
controller comes back, and the results are reported then). Once it is told to stop (SIGTERM,
Ctrl-C, a Drain), waiting without bound would keep it up silently for as long as the controller
is down. So a stage that cannot report says so in the log at once, and a stopping agent waits
`--report-wait` seconds (BUILDIT_AGENT_REPORT_WAIT) from the later of "the stage began to
report" and "the stop began"; then it keeps the result in its state dir (`agent.pending`) and
goes. A second signal gives up at once, keeping what finished the same way.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from agent.contract.types import StageStatus
from agent.pending import PendingReport, keep_pending
from agent.settings import DEFAULT_REPORT_WAIT_S
from agent.state import StateError

__all__ = ["ReportBound"]

log = logging.getLogger("agent")


class ReportBound:
    """The agent's bound on waiting to report, and where results go when it is reached."""

    def __init__(
        self,
        wait_s: float = DEFAULT_REPORT_WAIT_S,
        *,
        address: str = "",
        state_dir: Path | None = None,
    ) -> None:
        self.wait_s = wait_s
        self.address = address
        self.state_dir = state_dir
        #: Results kept in the state dir by this process.
        self.kept = 0
        self._stopping_since: float | None = None
        self._aborted = False

    def stopping(self) -> None:
        """The agent began to stop: from now on, waiting to report is bounded."""
        if self._stopping_since is None:
            self._stopping_since = asyncio.get_running_loop().time()

    def abort(self) -> None:
        """The agent stops at once: no more waiting at all."""
        self._aborted = True
        self.stopping()

    @property
    def bounded(self) -> bool:
        """Whether waiting to report has an end now (the agent is stopping)."""
        return self._stopping_since is not None

    def expired(self, since: float) -> bool:
        """Whether a stage that began to report at `since` (loop time) waited long enough."""
        if self._aborted:
            return True
        if self._stopping_since is None:
            return False
        start = max(since, self._stopping_since)
        return asyncio.get_running_loop().time() >= start + self.wait_s

    def note_unreachable(self, lease_id: str, stage: str, status: StageStatus, noted: str) -> str:
        """Say once (and once more when the stop bounds it) that a result waits for the controller.

        `noted` is what was said for this stage so far ("", "waiting" or "bounded"); returns the new.
        """
        if noted == "bounded" or (noted == "waiting" and not self.bounded):
            return noted
        what = f"lease {lease_id} (stage '{stage}', {status})"
        if self.bounded:
            log.warning(
                "%s: the controller at %s is unreachable; the agent is stopping: waiting up to %gs to "
                "report it, then keeping it for the next start",
                what,
                self.address,
                self.wait_s,
            )
            return "bounded"
        log.warning(
            "%s: the controller at %s is unreachable; reporting it when it is back", what, self.address
        )
        return "waiting"

    def keep(self, report: PendingReport) -> None:
        """Keep a result the controller did not take in time, for the next start of this agent."""
        if self.state_dir is None:
            log.error("lease %s: no state dir to keep its result in; it is lost", report.lease_id)
            return
        try:
            path = keep_pending(self.state_dir, report)
        except (OSError, ValueError, StateError) as exc:
            log.error("lease %s: cannot keep its result in %s: %s", report.lease_id, self.state_dir, exc)
            return
        self.kept += 1
        log.warning(
            "lease %s (stage '%s', %s): the controller at %s did not answer; result kept in %s for the "
            "next start",
            report.lease_id,
            report.stage,
            report.update.status,
            self.address,
            path,
        )
