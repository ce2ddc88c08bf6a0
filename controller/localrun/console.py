"""Terminal output for `buildit run`: prefixed live lines, a progress line, the summary table."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:  # imported when needed: a non-interactive run never loads them
    from rich.live import Live
    from rich.spinner import Spinner

from agent.contract.types import StageStatus
from controller.localrun.execute import StageOutcome

STYLES: dict[StageStatus, tuple[str, str]] = {
    StageStatus.SUCCEEDED: ("green", "✔"),
    StageStatus.FAILED: ("red", "✘"),
    StageStatus.TIMED_OUT: ("red", "⏱"),
    StageStatus.ERROR: ("red", "!"),
    StageStatus.CANCELLED: ("yellow", "⊘"),
    StageStatus.SKIPPED: ("dim", "–"),
    StageStatus.RUNNING: ("cyan", "▶"),
    StageStatus.PENDING: ("dim", "·"),
    StageStatus.QUEUED: ("dim", "·"),
}
PREFIX_COLORS = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta", "bright_blue")
HEARTBEAT_S = 30.0


def format_duration(seconds: float) -> str:
    """Short human duration: 420ms, 3.2s, 2m05s, 1h02m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ConsoleReporter:
    """Prints every output line as `[stage] line` as it arrives.

    On a terminal a live footer shows the running stages and their elapsed time; elsewhere (CI
    logs, pipes) a `still running` line appears every 30 s so long stages visibly progress.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        stage_names: list[str] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        interactive: bool | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.console = Console(file=self.out, highlight=False, soft_wrap=True)
        self.interactive = self.console.is_terminal if interactive is None else interactive
        self.heartbeat_s = heartbeat_s
        names = stage_names or []
        width = max((len(n) for n in names), default=0)
        self.prefix = {n: f"[{n}]".ljust(width + 2) + " " for n in names}
        self.colors = {n: PREFIX_COLORS[i % len(PREFIX_COLORS)] for i, n in enumerate(names)}
        self.running: dict[str, float] = {}
        self._live: Live | None = None
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin the progress display (call inside the event loop)."""
        if self.interactive:
            from rich.live import Live

            self._live = Live(self._footer(), console=self.console, refresh_per_second=8, transient=True)
            self._live.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        """End the progress display before the summary."""
        if self._ticker:
            self._ticker.cancel()
        if self._live:
            self._live.stop()
            self._live = None

    async def _tick(self) -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(0.25 if self.interactive else min(1.0, self.heartbeat_s))
            if self._live:
                self._live.update(self._footer())
            elif time.monotonic() - last_beat >= self.heartbeat_s:
                last_beat = time.monotonic()
                for name, started in self.running.items():
                    self._write(name, f"… still running ({format_duration(time.monotonic() - started)})")

    def _footer(self) -> Spinner | Text:
        if not self.running:
            return Text("")
        from rich.spinner import Spinner

        now = time.monotonic()
        parts = ", ".join(f"{n} {format_duration(now - t)}" for n, t in self.running.items())
        return Spinner("dots", text=Text(f"running: {parts}", style="cyan"))

    def _prefix(self, name: str) -> str:
        return self.prefix.get(name) or f"[{name}] "

    def _write(self, name: str, text: str, style: str | None = None) -> None:
        if self.interactive:
            line = Text(self._prefix(name), style=self.colors.get(name, "cyan"))
            line.append(Text.from_ansi(text) if "\x1b" in text else Text(text, style=style or ""))
            self.console.print(line)
        else:
            self.out.write(self._prefix(name) + text + "\n")
            self.out.flush()

    def stage_started(self, name: str, attempt: int) -> None:
        """A stage (attempt) began."""
        self.running[name] = time.monotonic()
        suffix = f" (attempt {attempt})" if attempt > 1 else ""
        self._write(name, f"▶ started{suffix}", style="bold")

    def line(self, name: str, text: str) -> None:
        """One line of stage output."""
        self._write(name, text)

    def note(self, name: str, text: str) -> None:
        """Something BuildIt says about a stage (retries, artifacts)."""
        self._write(name, f"· {text}", style="dim")

    def stage_finished(self, outcome: StageOutcome) -> None:
        """A stage ended (or was skipped/cancelled without running)."""
        self.running.pop(outcome.name, None)
        style, icon = STYLES[outcome.status]
        detail = (
            f" — {outcome.message}" if outcome.message and outcome.status is not StageStatus.SUCCEEDED else ""
        )
        took = f" in {format_duration(outcome.duration_s)}" if outcome.attempts else ""
        self._write(outcome.name, f"{icon} {outcome.status.value}{took}{detail}", style=style)

    def summary(self, outcomes: list[StageOutcome], total_s: float) -> None:
        """The closing table: stage, status, duration (and attempts/exit code when useful)."""
        from rich.table import Table

        self.stop()
        table = Table(title=None, show_edge=False, pad_edge=False, box=None, header_style="bold")
        table.add_column("stage")
        table.add_column("status")
        table.add_column("duration", justify="right")
        table.add_column("attempts", justify="right")
        table.add_column("exit", justify="right")
        for outcome in outcomes:
            style, icon = STYLES[outcome.status]
            table.add_row(
                outcome.name,
                Text(f"{icon} {outcome.status.value}", style=style),
                format_duration(outcome.duration_s) if outcome.attempts else "-",
                str(outcome.attempts) if outcome.attempts else "-",
                "" if outcome.exit_code is None else str(outcome.exit_code),
            )
        self.console.print()
        self.console.print(table)
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        self.console.print(f"\n{len(outcomes)} stages: {parts} in {format_duration(total_s)}")
