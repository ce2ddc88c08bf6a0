"""Containing what a local stage starts: nothing outlives its command, nor the agent that ran it.

A process group is not enough: `setsid` (or a double fork into a new session) leaves it, and when
the agent is killed (`kill -9`, OOM) nobody signals the group at all, so a stage retried on another
agent ran twice. Two mechanisms, both started with the command, neither needing the agent to be
alive at the end:

* **A PID namespace per command** (`unshare --pid --fork --kill-child --mount-proc`, util-linux),
  where the host allows it: as root, or as another user when unprivileged user namespaces are
  enabled (`--user --map-current-user`: the same uid inside). The namespace's first process is a
  small `sh` (`STAGE_INIT`) that runs the command as its child and waits for it; when it exits,
  the kernel kills everything left in the namespace, `setsid` daemons included. The command is not
  the namespace's first process, so signals reach it as usual (a first process ignores signals it
  has no handler for, even `kill $$` from itself). `--mount-proc` gives the namespace its own
  `/proc`: a stage sees its own processes only, not the agent's (whose `/proc/<pid>/environ` may
  hold the registration token).
* **The agent's death**: every command's stdin is the read end of a pipe whose write end only the
  agent process holds (close-on-exec). The init forks a watcher that blocks reading it; when the
  agent dies, for any reason, the read returns and the watcher kills everything (`kill -9 -1` in
  the namespace, the process group without one). The command itself reads /dev/null, as before.

Without namespaces (no root and no user namespaces, or not Linux) the command runs in its own
process group, as before, with the same watcher on the group; daemons that leave the group are
found afterwards by the marker every stage process inherits in its environment (`STAGE_MARKER`,
see `kill_marked`), on Linux, as long as they keep that variable and run as the agent's user.

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
    "CONTAINMENTS",
    "STAGE_INIT",
    "STAGE_MARKER",
    "Containment",
    "kill_marked",
    "namespace_prefix",
]

log = logging.getLogger("agent")

Containment = Literal["auto", "namespace", "process-group"]
CONTAINMENTS: Final = get_args(Containment)

#: Every local stage process inherits `BUILDIT_STAGE=<marker>` (see `kill_marked`).
STAGE_MARKER: Final = "BUILDIT_STAGE"

#: The first process of a command: `sh -c STAGE_INIT <shell> <command> <who to kill>`. It keeps the
#: agent's pipe (stdin) as fd 3 for a watcher, runs the command (stdin /dev/null, fd 3 closed) and
#: exits with its status. The watcher's `kill -9 $2` ends everything once the agent is gone.
STAGE_INIT: Final = (
    "exec 3<&0 </dev/null\n"
    '"$0" -c "$1" 3<&- &\n'
    "c=$!\n"
    "(read _ <&3; kill -9 $2 2>/dev/null) &\n"
    "exec 3<&-\n"
    "wait $c\n"
)

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
