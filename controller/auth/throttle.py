"""Slowing down password guessing: failed logins per user name and per client address back off.

After `free` failures within `window_s`, each further attempt for that user (or from that
address) must wait 2^(n-free) seconds (capped at `max_delay_s`) after the previous failure. A
success clears the user's counter. Kept in memory: a restart forgets (an attacker gains a few free
guesses per restart); several replicas each count their own (documented).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.errors import TooManyRequests


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


@dataclass
class LoginThrottle:
    """Failure counters by key (`user:<name>`, `addr:<ip>`)."""

    free: int = 5
    max_delay_s: float = 300.0
    window_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 100_000
    _failures: dict[str, _Failures] = field(default_factory=dict)

    def check(self, username: str, address: str) -> None:
        """Refuse (TooManyRequests) an attempt made before the back-off of its user or address ends."""
        now = self.clock()
        wait = max(self._wait(f"user:{username.casefold()}", now), self._wait(f"addr:{address}", now))
        if wait > 0:
            raise TooManyRequests(
                f"too many failed sign-in attempts; try again in {int(wait) + 1} s", retry_after_s=wait
            )

    def failed(self, username: str, address: str) -> None:
        """Count a failed attempt against the user name and the address."""
        now = self.clock()
        if len(self._failures) >= self.max_entries:
            self._prune(now)
        for key in (f"user:{username.casefold()}", f"addr:{address}"):
            entry = self._failures.get(key)
            if entry is None or now - entry.last > self.window_s:
                entry = self._failures[key] = _Failures()
            entry.count += 1
            entry.last = now

    def succeeded(self, username: str) -> None:
        """A correct password clears the user's counter (not the address's: one good account does not
        license an address to keep guessing others)."""
        self._failures.pop(f"user:{username.casefold()}", None)

    def _wait(self, key: str, now: float) -> float:
        entry = self._failures.get(key)
        if entry is None or entry.count < self.free or now - entry.last > self.window_s:
            return 0.0
        delay = min(self.max_delay_s, 2.0 ** (entry.count - self.free))
        return max(0.0, entry.last + delay - now)

    def _prune(self, now: float) -> None:
        self._failures = {k: v for k, v in self._failures.items() if now - v.last <= self.window_s}
