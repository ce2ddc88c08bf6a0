"""Helpers shared by the benchmark modules: output contract, errors, process figures, percentiles.

They live apart from `run.py` because `python -m tests.bench.run` executes that file as `__main__`:
a bench module importing `tests.bench.run` would get a second copy of it, whose `BenchError` the
entry point would not catch.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of utime/stime in /proc/<pid>/stat


class BenchError(Exception):
    """A benchmark could not produce a figure; the message becomes the JSON line's `error`."""


def log(message: str) -> None:
    """Progress on stderr: stdout is reserved for the JSON lines."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    """Print one result as one JSON line, flushed so a consumer sees it even if a later bench hangs."""
    print(json.dumps(record, sort_keys=False), flush=True)


def context_fields() -> dict[str, Any]:
    """Machine context for every line: figures are meaningless without knowing what ran them."""
    try:
        cpus = len(os.sched_getaffinity(0))  # what this process may use, not what the host has
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": cpus,
        # Inherited by buildit: with it set, modules without a .pyc yet (BuildIt's own, in an
        # editable install) are compiled from source on every run, which inflates start-up.
        "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
    }


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh temporary directory (database, data dirs, agent state), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- /proc figures


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far, all its threads included.

    Read from /proc/<pid>/stat rather than psutil (not a dependency) or getrusage (children only
    once they are reaped). Fields 14 and 15 count clock ticks (usually 10 ms), so windows of a
    few seconds are needed for a figure to mean something. The split matters for diagnosis:
    system time is mostly syscalls (socket I/O, fsync), user time the interpreter.
    """
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15, counted from field 3
    return utime / _CLOCK_TICKS, stime / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (see `cpu_times`)."""
    return sum(cpu_times(pid))


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MiB: VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise BenchError(f"/proc/{pid}/status has no {field} line")


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `pct` % of samples at or below it.

    Nearest-rank rather than interpolation because it always names a latency that really
    happened, and with 200 samples p99 is the second-worst one, which is what the target is about.
    """
    if not values:
        raise BenchError("no samples")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """`{prefix}p50_ms`, `p90`, `p99` and `max` of latencies given in seconds, in rounded ms."""
    return {
        f"{prefix}p50_ms": round(percentile(seconds, 50) * 1000, 2),
        f"{prefix}p90_ms": round(percentile(seconds, 90) * 1000, 2),
        f"{prefix}p99_ms": round(percentile(seconds, 99) * 1000, 2),
        f"{prefix}max_ms": round(max(seconds) * 1000, 2),
    }


def epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO-8601 timestamp with an offset (as the REST API returns)."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        raise BenchError(f"timestamp {iso!r} has no UTC offset; cannot compare it with this clock")
    return moment.timestamp()
