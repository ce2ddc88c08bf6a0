"""Following a run or a stage's log live, over the controller's /ws socket (the one live door).

`follow_run` watches one run (`{"op":"watch","topic":"run"}`: its current state at once, then
every change) and prints each stage's progress; when the run ends it prints the last lines of
every failed stage and returns the run's exit code. `follow_log` streams one stage's log
(`{"op":"log"}`: the stored bytes, then live ones, no gap, no duplicate) until the stage ends,
moving on to the next attempt when a retry supersedes the one it follows.

A dropped socket is reopened (for up to RECONNECT_S) and the subscription sent again: a run is
re-sent whole, a log resumes from the last byte received. Exit codes (also `buildit logs -f`):
0 succeeded, 1 failed or timed out, 3 cancelled, 4 error (the stage could not run).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from agent.contract import logmarks
from controller.cli.client import call, call_text, open_socket
from controller.cli.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_RUN_ERROR, ApiError
from controller.cli.output import duration, escape

if TYPE_CHECKING:
    from rich.console import Console
    from websockets.sync.client import ClientConnection

FINISHED = frozenset({"succeeded", "failed", "cancelled", "timed_out", "error", "skipped"})
FAILED = ("failed", "timed_out", "error")
#: How long a dropped socket is retried before the CLI gives up.
RECONNECT_S = 60.0
#: The failing stage's last lines printed when a followed run fails.
TAIL_LINES = 20
TAIL_BYTES = 64 * 1024
_CODES = {
    "succeeded": EXIT_OK,
    "failed": EXIT_FAILED,
    "timed_out": EXIT_FAILED,
    "cancelled": EXIT_CANCELLED,
    "error": EXIT_RUN_ERROR,
}
_MARKS = {
    "queued": ("·", "dim"),
    "running": ("▶", "cyan"),
    "succeeded": ("✔", "green"),
    "failed": ("✘", "red"),
    "timed_out": ("⏱", "red"),
    "error": ("!", "red"),
    "cancelled": ("⊘", "yellow"),
    "skipped": ("–", "dim"),
}


def exit_code(status: str) -> int:
    """The process exit status for a run's or stage's final status (see the module docstring)."""
    return _CODES.get(status, EXIT_FAILED)


class LiveSession:
    """One /ws connection that reopens itself when dropped and re-sends `subscribe()` each time."""

    def __init__(self, server: str, subscribe: Callable[[], list[dict[str, Any]]]) -> None:
        self.server = server
        self.subscribe = subscribe
        self._socket: ClientConnection | None = None
        #: When the connection was lost (None while connected): reconnecting is bounded from it.
        self._lost_at: float | None = None

    def __enter__(self) -> LiveSession:
        self._socket = open_socket(self.server)  # the first failure is an error at once
        self.resubscribe()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def resubscribe(self) -> None:
        """Send the subscription again (after a `reload`, or to follow something else); on a
        socket that dropped meanwhile, `messages` reconnects and sends it."""
        from websockets.exceptions import ConnectionClosed

        if self._socket is None:
            return
        try:
            for message in self.subscribe():
                self._socket.send(json.dumps(message))
        except (ConnectionClosed, OSError):
            self._socket.close()
            self._socket = None

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every message the controller sends, reconnecting when the socket drops."""
        from websockets.exceptions import ConnectionClosed

        while True:
            if self._socket is None:
                self._reconnect()
                continue
            try:
                text = self._socket.recv(timeout=1.0)  # short waits keep Ctrl-C prompt
            except TimeoutError:
                continue
            except (ConnectionClosed, OSError):
                self._socket.close()
                self._socket = None
                continue
            if isinstance(text, str):
                message = json.loads(text)
                if isinstance(message, dict):
                    yield message

    def _reconnect(self) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            print(f"buildit: lost the live connection to {self.server}; reconnecting…", file=sys.stderr)
        deadline = self._lost_at + RECONNECT_S
        delay = 0.5
        while True:
            try:
                self._socket = open_socket(self.server)
            except ApiError as exc:
                if str(exc).startswith(("401", "403")) or time.monotonic() + delay > deadline:
                    raise ApiError(f"gave up reconnecting after {RECONNECT_S:.0f}s: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._lost_at = None
            self.resubscribe()  # if this drops it again, the next receive reconnects once more
            return


# ------------------------------------------------------------------ a run


def run_label(run: dict[str, Any], name: str) -> str:
    """How a run is named on the command line: `pipeline#number`."""
    return f"{name}#{run['number']}"


class RunProgress:
    """Prints each stage's status changes once, in the order they are seen."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seen: dict[str, tuple[str, str]] = {}
        self.width = 12

    def stage(self, stage: dict[str, Any]) -> None:
        """Print a stage's change of status (or of its waiting message); nothing if unchanged."""
        name, status, message = str(stage["name"]), str(stage["status"]), str(stage.get("message") or "")
        if self.seen.get(name) == (status, message):
            return
        self.seen[name] = (status, message)
        if status == "pending" or (status == "queued" and not message):
            return  # not news: every stage starts so
        self.width = max(self.width, len(name))
        mark, style = _MARKS.get(status, ("?", ""))
        text = status.replace("_", " ")
        if status == "running" and stage.get("agent"):
            text += f" on {stage['agent']}"
        if status in FINISHED:
            took = duration(stage.get("started_at"), stage.get("finished_at"))
            if took:
                text += f" in {took}"
        if message and status != "succeeded":
            # Messages often start with the status itself ("skipped: needs test"): say it once.
            text = message if message.startswith(status.replace("_", " ")) else f"{text}: {message}"
        clock = datetime.now().strftime("%H:%M:%S")
        self.console.print(
            f"[dim]{clock}[/] {escape(name):<{self.width}} [{style}]{mark} {escape(text)}[/]",
            highlight=False,
        )


def follow_run(server: str, run: dict[str, Any], name: str, console: Console) -> int:
    """Print the run's progress until it ends; then each failed stage's last lines. Its exit code."""
    run_id = str(run["id"])
    progress = RunProgress(console)
    for stage in run.get("stages", ()):
        progress.stage(stage)
    status = str(run["status"])
    if status not in FINISHED:
        subscribe = [{"op": "watch", "topic": "run", "run_id": run_id}]
        with LiveSession(server, lambda: subscribe) as session:
            for message in session.messages():
                kind = message.get("type")
                if kind == "stage" and message["stage"].get("run_id") == run_id:
                    progress.stage(message["stage"])
                elif kind == "run" and message["run"].get("id") == run_id:
                    status = str(message["run"]["status"])
                    if status in FINISHED:
                        break
                elif kind == "reload":
                    session.resubscribe()  # answered with the run's whole current state
                elif kind == "error":
                    raise ApiError(f"the controller refused to stream run {run_label(run, name)}: {message}")
    final = call(server, "GET", f"/api/v1/pipelines/{run['pipeline_id']}/runs/{run['number']}")
    for stage in final["stages"]:
        progress.stage(stage)
    for stage in final["stages"]:
        if stage["status"] in FAILED:
            print_tail(server, final, name, stage, console)
    status = str(final["status"])
    took = duration(final.get("started_at"), final.get("finished_at"))
    mark, style = _MARKS.get(status, ("?", ""))
    console.print(
        f"[{style}]{mark} {escape(run_label(final, name))} {status.replace('_', ' ')}[/]"
        + (f" in {took}" if took else "")
        + (f": {escape(final['error'])}" if final.get("error") else ""),
        highlight=False,
    )
    return exit_code(status)


def print_tail(server: str, run: dict[str, Any], name: str, stage: dict[str, Any], console: Console) -> None:
    """The last lines of a stage's log, under a rule naming the stage and why it ended."""
    size = int(stage.get("log_size") or 0)
    start = max(0, size - TAIL_BYTES)
    quoted = urllib.parse.quote(str(stage["name"]), safe="")
    base = f"/api/v1/pipelines/{run['pipeline_id']}/runs/{run['number']}/stages/{quoted}/log"
    data, _ = call_text(server, f"{base}?offset={start}") if size else (b"", {})
    lines = logmarks.plain(data.decode("utf-8", "replace")).splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first one is cut
    why = stage.get("message") or stage["status"]
    console.print(f"[red]── {escape(stage['name'])}: {escape(why)} ──[/]", highlight=False)
    if not lines:
        console.print("[dim](no output)[/]", highlight=False)
    for line in lines[-TAIL_LINES:]:
        console.out(line, highlight=False)
    console.print(
        f"[dim]full log: buildit logs {escape(run_label(run, name))} {escape(stage['name'])}[/]",
        highlight=False,
    )


# ------------------------------------------------------------------ a stage's log


def follow_log(server: str, run_id: str, stage: str, attempt: int, out: BinaryIO, offset: int = 0) -> str:
    """Write the stage's log to `out` as it grows, until the stage ends; its final status.

    BuildIt's markers are left out (agent.contract.logmarks): the text is what a terminal shows.
    """
    state = {"attempt": attempt, "offset": offset}
    plain = logmarks.PlainStream()
    tag = "cli"

    def subscribe() -> list[dict[str, Any]]:
        return [
            {
                "op": "log",
                "id": tag,
                "run_id": run_id,
                "stage": stage,
                "attempt": state["attempt"],
                "offset": state["offset"],
            }
        ]

    with LiveSession(server, subscribe) as session:
        for message in session.messages():
            kind = message.get("type")
            if message.get("id") not in (tag, None):
                continue
            if kind == "log":
                out.write(plain.feed(str(message["data"]).encode("utf-8")))
                out.flush()
                state["offset"] = int(message["next"])
            elif kind == "log_end":
                out.write(plain.flush())
                out.flush()
                if message["status"] != "retried":
                    return str(message["status"])
                state["attempt"] += 1
                state["offset"] = 0
                print(
                    f"buildit: attempt {state['attempt'] - 1} was retried; following attempt "
                    f"{state['attempt']}",
                    file=sys.stderr,
                    flush=True,
                )
                session.resubscribe()
            elif kind == "reload":
                session.resubscribe()  # fell behind: on from the last byte received
            elif kind == "error":
                raise ApiError(f"cannot follow the log of stage {stage!r}: {message.get('message')}")
    raise AssertionError("unreachable: the message stream never ends")
