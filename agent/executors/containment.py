"""Containing what a local stage starts: nothing outlives its command, nor the agent that ran it.

A process group is not enough: `setsid` (or a double fork into a new session) leaves it, and when
the agent is killed (`kill -9`, OOM) nobody signals the group at all, so a stage retried on another
agent ran twice. Two mechanisms, neither needing the agent to be alive at the end:

* **A PID namespace per command** (`unshare --pid --fork --kill-child --mount-proc`, util-linux),
  where the host allows it: as root, or as another user when unprivileged user namespaces are
  enabled (`--user --map-current-user`: the same uid inside). The command's shell is the
  namespace's first process; when it exits, the kernel kills everything left in the namespace,
  `setsid` daemons included. A first process ignores signals it has no handler for, so the shell
  gets handlers for TERM and INT that exit as the default action would (`COMMAND_PRELUDE`): a
  timeout's SIGTERM and a script's `kill $$` still end it. (`kill -9 $$` from inside is ignored.)
  `--mount-proc` gives the namespace its own `/proc`: a stage sees its own processes only, not the
  agent's (whose `/proc/<pid>/environ` may hold the registration token).
* **The agent's death**: one small `sh` per agent (`Reaper`), in a session of its own, blocks
  reading a pipe whose write end only the agent holds. When the agent dies, for any reason, the
  read ends and the reaper SIGKILLs every process carrying this agent's marker (`STAGE_MARKER`):
  each namespace's first process with them, hence the whole namespace. Nothing per command.

Without namespaces (no root and no user namespaces, or not Linux) the command runs in its own
process group, as before; daemons that leave the group are found by the marker every stage
process inherits in its environment (`STAGE_MARKER`, see `kill_marked`) at the stage's end, at the
agent's death (the reaper) and at its next start, on Linux, as long as they keep that variable.

cgroups are not used: a PID namespace gives the same "everything dies" guarantee without a
delegated cgroup subtree, which most hosts (and containers running agents) do not offer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Final, Literal, get_args

__all__ = [
    "COMMAND_PRELUDE",
    "CONTAINMENTS",
    "STAGE_MARKER",
    "Containment",
    "Reaper",
    "kill_marked",
    "namespace_prefix",
]

log = logging.getLogger("agent")

Containment = Literal["auto", "namespace", "process-group"]
CONTAINMENTS: Final = get_args(Containment)

#: Every local stage process inherits `BUILDIT_STAGE=<marker>` (see `kill_marked`).
STAGE_MARKER: Final = "BUILDIT_STAGE"

#: Put before a command that is the first process of its namespace (see the module docstring).
COMMAND_PRELUDE: Final = "trap 'exit 143' TERM; trap 'exit 130' INT\n"

#: The reaper: blocks reading its stdin; once that ends (the agent is gone) it SIGKILLs, twice over
#: (a process may fork meanwhile), every process whose environment starts a variable with
#: `BUILDIT_STAGE=$1` (Linux /proc; `grep -z` reads the NUL-separated environment).
_REAPER: Final = """trap '' INT TERM HUP
while read -r _; do :; done
for pass in 1 2; do
  for p in /proc/[0-9]*; do
    grep -qzs "^BUILDIT_STAGE=$1" "$p/environ" && kill -9 "${p#/proc/}" 2>/dev/null
  done
done
"""

_PROBE_TIMEOUT_S: Final = 10.0


def namespace_prefix() -> tuple[str, ...] | None:
    """The `unshare` command line that gives each command its own PID namespace here, or None.

    Probed once per process (a real namespace is made): as root without a user namespace, else
    with one that maps the current user to itself. None when `unshare` is missing or refused.
    """
    return _probe()


@functools.cache
def _probe() -> tuple[str, ...] | None:
    unshare = shutil.which("unshare")
    if unshare is None or not Path("/proc/self/ns/pid").exists():
        log.info("local stages: no PID namespaces (unshare not found); process groups only")
        return None
    base = (unshare, "--pid", "--fork", "--kill-child", "--mount-proc")
    candidates: list[tuple[str, ...]] = [base] if os.geteuid() == 0 else []
    candidates.append((unshare, "--user", "--map-current-user", *base[1:]))
    for prefix in candidates:
        try:
            done = subprocess.run(
                [*prefix, "/bin/sh", "-c", "test $$ = 1"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=_PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["refused"]
        log.debug("%s: %s", " ".join(prefix), reason[0])
    log.info("local stages: PID namespaces refused here (no root, no user namespaces); process groups only")
    return None


class Reaper:
    """Kills the processes of this executor's stages once the agent is gone (see the module docstring).

    `start(prefix)` before the first command (again after the prefix changed): the reaper then
    waits, costing nothing per command, and kills every process whose `BUILDIT_STAGE` marker starts
    with `prefix` when its stdin ends, that is when the last process holding the write end (this
    one: it is close-on-exec) is gone. `close()` (the executor is done, its stages were ended by the
    agent) stops it without a sweep.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._prefix = ""

    def serves(self, prefix: str) -> bool:
        """True when a reaper for `prefix` was started (cheap: no system call)."""
        return self._process is not None and self._prefix == prefix

    def start(self, prefix: str) -> None:
        """Make sure a reaper for `prefix` runs. Blocking (starts a process)."""
        if self.serves(prefix) and self._process is not None and self._process.poll() is None:
            return
        self.close()
        self._prefix = prefix
        try:
            # Its own session: no signal meant for the agent's terminal or a stage's group reaches it.
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", _REAPER, "reaper", prefix],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("cannot start the stage reaper (%s); stages may outlive a killed agent", exc)

    def close(self) -> None:
        """Stop the reaper, without a sweep (that is for the agent's death). Blocking, briefly."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def kill_marked(prefix: str) -> int:
    """SIGKILL every process whose environment has `BUILDIT_STAGE=<prefix>...`; how many were found.

    Linux only (reads /proc/<pid>/environ, so only processes of this user, or all as root): the
    fallback for daemons that left a stage's process group where no PID namespace holds them, and
    at an agent's start for what a killed predecessor's stages left. A few passes, since a process
    may fork while the previous one is being killed.
    """
    needle = f"\0{STAGE_MARKER}={prefix}".encode()
    own = os.getpid()
    total = 0
    for _ in range(3):
        found = 0
        try:
            entries = os.listdir("/proc")
        except OSError:
            return total
        for entry in entries:
            if not entry.isdigit() or int(entry) == own:
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    environ = b"\0" + fh.read()
            except OSError:
                continue
            if needle in environ:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)
                    found += 1
        total += found
        if not found:
            break
    return total
