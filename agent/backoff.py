"""Waiting between attempts: jittered exponential backoff, and a sleep that a drain cuts short.

Its own module because every loop that talks to the controller (registration, the Lease and log
streams, a stage's writes and artifact transfers) waits between attempts the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

__all__ = ["Backoff", "sleep_unless"]


class Backoff:
    """Jittered exponential backoff: `initial` doubling up to `maximum`, reset after a success.

    Each delay is drawn from [d/2, d] for the current step d, so a fleet of agents that lost the same
    controller does not reconnect in lockstep.
    """

    def __init__(
        self, initial: float = 0.1, maximum: float = 5.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self._step = initial

    def next(self) -> float:
        """The delay before the next attempt (and double the step for the one after)."""
        step = min(self._step, self.maximum)
        self._step = min(self._step * 2, self.maximum)
        return step * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        """Start again from `initial` (the last attempt worked)."""
        self._step = self.initial


async def sleep_unless(delay: float, stop: Callable[[], bool]) -> bool:
    """Sleep up to `delay`; True when `stop()` became true meanwhile (the caller stops waiting).

    Polled every 0.1 s rather than woken by an event, so any condition (e.g. "the agent is
    draining") can end the wait without every place that changes it knowing about the sleepers.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + delay
    while not stop():
        remaining = end - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(remaining, 0.1))
    return True
