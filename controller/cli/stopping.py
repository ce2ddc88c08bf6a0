"""A clean stop for `buildit up` and `buildit controller`: the first Ctrl-C (or SIGTERM) stops
gracefully and says what it waits for and how long; the second stops at once. No tracebacks.

Why its own module: the long-running commands share it, and what a stop means differs only in
whose stages are cut off.

* `buildit up` runs its agent in this process, so a stop ends its stages: they get the grace
  period (`BUILDIT_STOP_GRACE`) to finish and report; whatever still runs then (or at the second
  Ctrl-C) is killed and recorded `cancelled` with "controller stopped" (`Scheduler.cut_off`):
  nothing is re-run silently at the next start (a stage with `retries` left is queued again,
  saying so). Should the process die before it could record them (kill -9), the next start
  records them the same way (`cut_off_leftovers`).
* `buildit controller` cuts nothing off: stages on agents in other processes keep running and
  report when a controller is back (their leases are durable). Its stop says so and is prompt.

The second signal gives the stop FORCE_EXIT_S more, then ends the process whatever still waits
(the stages of the embedded agent die with it: see the README's "Processes" table).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

if TYPE_CHECKING:  # the agent and the server stack are imported by the commands that run them
    from agent.runner import Agent
    from controller.scheduling.scheduler import Scheduler
    from controller.server import Running

#: What the stages cut off by a stop are recorded with.
CONTROLLER_STOPPED = "controller stopped"
#: How long the stop may still take after the second signal before the process just ends.
FORCE_EXIT_S = 3.0
#: Exit status after a second signal (the stop did not wait for what it would have).
EXIT_STOPPED_NOW = 1


def say(message: str) -> None:
    """One line about the stop on stderr (the banner and run links are on stdout)."""
    print(f"buildit: {message}", file=sys.stderr, flush=True)


class StopSignals:
    """SIGINT and SIGTERM for the process: `first` is set by the first, `now` by the second.

    The second also arms a watchdog: the stop gets FORCE_EXIT_S to finish, then the process ends.
    """

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.now = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._received)

    def _received(self) -> None:
        if not self.first.is_set():
            self.first.set()
            return
        if not self.now.is_set():
            self.now.set()
            say("stopping now")
            self._loop.call_later(FORCE_EXIT_S, _force_exit)

    def close(self) -> None:
        """Give the signals back (the process is about to end)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)

    async def wait_now(self, timeout: float) -> bool:
        """Wait up to `timeout` for the second signal; True when it came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.now.wait()
        return self.now.is_set()


def _force_exit() -> None:
    """The stop outlived FORCE_EXIT_S after the second signal: end the process as it stands."""
    say("stopped (forced)")
    os._exit(EXIT_STOPPED_NOW)


def _stages(count: int) -> str:
    return f"{count} stage{'' if count == 1 else 's'}"


async def stop_embedded_agent(
    agent: Agent, task: asyncio.Task[int], scheduler: Scheduler, signals: StopSignals, grace_s: float
) -> None:
    """After the first signal: let the agent of `buildit up` finish its stages within `grace_s`.

    What still runs at the end of the grace period or at the second signal is killed and recorded
    `cancelled` ("controller stopped"); the agent reports nothing more about it.
    """
    await signals.first.wait()
    running = len(agent.running_lease_ids)
    if running:
        say(
            f"stopping: finishing {_stages(running)} for up to {grace_s:g}s "
            "(Ctrl-C again to stop now and cancel them)"
        )
    else:
        say("stopping")
    agent.drain("the controller is stopping")
    now = asyncio.ensure_future(signals.now.wait())
    try:
        await asyncio.wait({task, now}, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        now.cancel()
    left = len(agent.running_lease_ids)
    if not task.done():
        if left:
            why = "at the second Ctrl-C" if signals.now.is_set() else f"after {grace_s:g}s"
            say(f"stopping {why}: cancelling {_stages(left)} still running ({CONTROLLER_STOPPED})")
        agent.stop(f"the controller records them cancelled ({CONTROLLER_STOPPED})")
        await asyncio.wait({task}, timeout=FORCE_EXIT_S)
    await _settle(task)
    agent_id = _uuid(agent.agent_id)
    if agent_id is not None:
        await scheduler.cut_off(agent_id, CONTROLLER_STOPPED)


async def _settle(task: asyncio.Task[Any]) -> None:
    """Let the agent's task end (cancelled if it must be), without its exception: an agent stopped
    here raises AgentExit("stopped before running stages finished"), which is this stop's doing."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def cut_off_leftovers(scheduler: Scheduler, agent_id: str) -> None:
    """At the start of `buildit up`: record the stages its previous process could not.

    Its agent lived in that process, so whatever was still leased to it died with it.
    """
    known = _uuid(agent_id)
    if known is None:
        return
    cut = await scheduler.cut_off(known, CONTROLLER_STOPPED)
    if cut:
        names = ", ".join(sorted({f"'{stage.name}'" for stage in cut}))
        say(f"{_stages(len(cut))} cut off when buildit up last stopped ({names}): {CONTROLLER_STOPPED}")


async def stop_controller(running: Running, signals: StopSignals) -> None:
    """Stop the servers: promptly, and at once after the second signal.

    Stages leased to agents in other processes are not touched: they keep running and report
    to the controller when it is back. Saying how many tells the operator nothing is lost.
    """
    elsewhere = len(running.deps.scheduler.by_lease)
    if elsewhere:
        say(f"stopping the controller: agents keep running {_stages(elsewhere)} and report when it is back")
    stopping = asyncio.ensure_future(running.stop(False))
    now = asyncio.ensure_future(signals.now.wait())
    try:
        await asyncio.wait({stopping, now}, return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():
            running.hurry()
        await stopping
    finally:
        now.cancel()
    say("stopped")


def end_process(code: int) -> NoReturn:
    """Exit with `code` now that everything is stopped, written and flushed.

    Why not a normal return: the interpreter's own teardown (gRPC's C core, once servers and
    channels were used) takes a second or two more, which would make every stop look slow.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def stored_agent_id(state_dir: Path) -> str:
    """The id the embedded agent registered with last time ("" when none, or unreadable)."""
    from agent.state import StateError, load_state

    try:
        state = load_state(state_dir)
    except StateError:
        return ""
    return state.agent_id if state is not None else ""


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None
