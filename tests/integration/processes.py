"""Finding this host's processes by a unique `sleep` argument, for the containment tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from pathlib import Path

_counter = itertools.count(1)


def marker() -> str:
    """A `sleep` argument no other process on this host has: finding it finds the process."""
    return f"{5000 + os.getpid() % 1000}.{time.time_ns() % 10**6:06d}{next(_counter)}"


def pids_with(argument: str) -> list[int]:
    """Live processes whose command line contains `argument` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argument in cmdline and state != "Z":
            found.append(int(entry))
    return found


async def gone(argument: str, timeout: float = 5.0) -> bool:
    """Poll until no process carries `argument` (True), or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while pids_with(argument):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def running(*arguments: str, timeout: float = 10.0) -> bool:
    """Poll until a process carries each of `arguments` (True), or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while not all(pids_with(argument) for argument in arguments):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def kill_all(*arguments: str) -> None:
    """Clean up after a failed test: SIGKILL whatever still carries one of `arguments`."""
    for argument in arguments:
        for pid in pids_with(argument):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
