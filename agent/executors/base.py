"""The one interface every executor implements.

An executor runs a compiled `StageSpec` inside a prepared workspace directory, streams each
output line to a callback as it appears, and returns how it ended. Timeout and cancellation are
the executor's job because only it knows how to kill what it started (a process group, a
container, a Pod) and must leave nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from agent.contract.types import ExecutionResult, Resources, StageSpec, StageStatus

OutputCallback = Callable[[str], None]
"""Receives one line of stage output (no trailing newline), in order.

A line longer than `agent.executors.lines.MAX_LINE_BYTES` arrives cut into pieces. When the
callback has a `piece(text, last)` method, executors pass those pieces to it instead (`last` for
the one that ends the line), so a masking callback can see across the cuts; see `piece_callback`.

Before each command, executors call the callback's `command(index, total, text)` method when it
has one (1-based index; the agent writes a marked header line, see `agent.contract.logmarks`),
else they pass it the line `$ <command>`; see `announce`.
"""

#: Limits of a container stage that sets none and runs on an agent without `--stage-*` settings:
#: no CPU or memory limit (builds differ too much for one guess), and at most 4096 processes at
#: once: enough for any build (a parallel `make`, a test runner's workers), not for a fork bomb.
DEFAULT_STAGE_LIMITS = Resources(pids=4096)

#: How many characters of a command a message quotes (its first line; the rest becomes "…").
COMMAND_QUOTE_CHARS = 60


def piece_callback(on_output: OutputCallback) -> Callable[[str, bool], None] | None:
    """The `piece` method of an output callback that has one (see `OutputCallback`), else None."""
    piece = getattr(on_output, "piece", None)
    return piece if callable(piece) else None


def announce(on_output: OutputCallback, index: int, total: int, command: str) -> None:
    """Tell the output that command `index` (1-based) of `total` starts: where the log's sections begin.

    Why a call and not a line: the agent marks the header so that no output can pass for one;
    callbacks without `command` (a terminal, a test's list) get the plain `$ <command>` line.
    """
    method = getattr(on_output, "command", None)
    if callable(method):
        method(index, total, command)
    else:
        on_output(f"$ {command}")


def resources_ignored(executor: str, resources: Resources) -> str:
    """The log's warning for a stage whose `resources` its executor cannot apply.

    Why a warning, not an error: the stage runs as it would have before it set them (a laptop
    agent, `buildit run`); the author learns that the limits protect nothing there.
    """
    return (
        f"warning: the {executor} executor cannot apply this stage's resources "
        f"({resources.describe()}): it runs without these limits"
    )


def quote_command(command: str, limit: int = COMMAND_QUOTE_CHARS) -> str:
    """A command as a message quotes it: its first line, blanks collapsed, cut to `limit` with "…".

    Why short: the message is one line in a table; the log shows the whole command.
    """
    lines = [line for line in command.strip().splitlines() if line.strip()]
    first = " ".join(lines[0].split()) if lines else ""
    if len(first) > limit:
        return first[: limit - 1].rstrip() + "…"
    return first + (" …" if len(lines) > 1 else "")


def outcome_message(
    result: ExecutionResult, commands: Sequence[str], mask: Callable[[str], str] = str
) -> str:
    """The stage's message, naming the command it ended in: `command 2 of 3 failed: "make test"
    exited with 1`, `timed out after 10s (in command 2 of 3: "sleep 60")`.

    Why here: the agent's final status, its closing log line and `buildit run` word it the same.
    `mask` hides secrets in the command before it is cut (a cut value would no longer be found).
    """
    index, total = result.command, len(commands)
    if not 1 <= index <= total:
        return result.message
    quoted = quote_command(mask(commands[index - 1]))
    where = f"command {index} of {total}"
    if result.status is StageStatus.FAILED and result.oom_killed:
        return f'{where} ran out of memory: "{quoted}" was killed ({result.message})'
    if result.status is StageStatus.FAILED and result.exit_code is not None:
        return f'{where} failed: "{quoted}" exited with {result.exit_code}'
    if result.status is StageStatus.TIMED_OUT:
        return f'{result.message or "timed out"} (in {where}: "{quoted}")'
    # A cancel's message says who or what cancelled it: kept as it is.
    return result.message


@dataclass(frozen=True)
class StageContext:
    """What the agent knows about a stage beyond its spec; nothing in it comes from a pipeline file.

    Why apart from the spec: the spec is what the controller compiled; this is the agent's own
    bookkeeping, which executors need to label and isolate what they start.
    """

    #: The lease the stage runs under ("" outside an agent, e.g. `buildit run`).
    lease_id: str = ""
    #: Host directories the workspace's Git repository borrows objects from (its
    #: `objects/info/alternates`): a container must see them read-only, at the same paths.
    shared_objects: tuple[Path, ...] = ()
    #: The lease's attempt number and run id (the Kubernetes executor names and labels its pod).
    attempt: int = 1
    run_id: str = ""
    #: The agent's token for fetching `spec.source` from the controller's Git mirror, for an
    #: executor that fetches it somewhere the agent's workspace is not (a Kubernetes pod). "": none.
    source_token: str = field(default="", repr=False)


NO_CONTEXT = StageContext()


class ExecutorError(Exception):
    """An executor cannot be used at all (e.g. no Docker engine reachable).

    Raised when an executor is created; the message is one line naming the problem and the fix.
    """


@runtime_checkable
class Executor(Protocol):
    """Runs stages. Implementations: local (processes), docker (containers), kubernetes (Pods)."""

    name: str
    #: Whether it applies a stage's `resources` (the local executor cannot: it says so in the log).
    applies_resources: bool

    def can_run(self, spec: StageSpec) -> bool:
        """Whether this executor is able to run `spec` (e.g. the local one ignores images)."""
        ...

    async def run(
        self,
        spec: StageSpec,
        workspace: Path,
        on_output: OutputCallback,
        cancel: asyncio.Event,
        context: StageContext = NO_CONTEXT,
    ) -> ExecutionResult:
        """Run all of `spec.commands` in `workspace`, stopping at the first failure.

        Never raises for a stage's own problems: returns succeeded, failed (non-zero exit),
        timed_out (after `spec.timeout_s`), cancelled (when `cancel` is set) or error (could not
        start, e.g. a missing image, with a one-line `message` naming it). Kills everything it
        started before returning.
        """
        ...

    async def close(self) -> None:
        """Release resources (connections) held by the executor."""
        ...
