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
* **The agent's death**: one small `sh` per agent (`Reaper`), in a session of its own, is told the
  process group of every running command and reads from a pipe whose write end only the agent
  holds. When the agent dies, for any reason, the read ends and the reaper SIGKILLs every group it
  was told of: the namespace's first process with it, hence the whole namespace. Per command this
  costs two short writes to a pipe, not a process.

Without namespaces (no root and no user namespaces, or not Linux) the command runs in its own
process group, as before, which the reaper covers too; daemons that leave the group are found by
the marker every stage process inherits in its environment (`STAGE_MARKER`, see `kill_marked`), at
the stage's end and at the agent's next start, on Linux, as long as they keep that variable and
run as the agent's user.

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

#: The reaper: keeps the set of process groups it is told ("+ PGID" / "- PGID" lines) and, once its
#: input ends, SIGKILLs each. Dash-compatible; the set is as large as the commands running at once.
_REAPER: Final = """trap '' INT TERM HUP
groups=' '
while read -r op group; do
  case $op in
    +) groups="$groups$group " ;;
    -) rest=' '; for g in $groups; do [ "$g" = "$group" ] || rest="$rest$g "; done; groups=$rest ;;
  esac
done
for g in $groups; do kill -9 -$g 2>/dev/null; done
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
    """Kills the process groups of running commands once the agent is gone (see the module docstring).

    Started on first use. `track(pgid)` when a command started, `untrack(pgid)` once its group is
    dead; `close()` ends the reaper (killing what is still tracked), as the agent's death would.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def track(self, pgid: int) -> None:
        """A command's process group to kill if the agent dies."""
        self._send(f"+ {pgid}\n")

    def untrack(self, pgid: int) -> None:
        """The group is gone: forget it (its number may be reused)."""
        self._send(f"- {pgid}\n")

    def close(self) -> None:
        """End the reaper; groups still tracked are killed."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def _send(self, line: str) -> None:
        if self._process is None or self._process.poll() is not None:
            self._process = self._start()
        if self._process is None or self._process.stdin is None:
            return
        try:
            self._process.stdin.write(line.encode("ascii"))
            self._process.stdin.flush()
        except OSError:
            log.warning("the stage reaper is gone; stages may outlive a killed agent until it restarts")
            self._process = None

    @staticmethod
    def _start() -> subprocess.Popen[bytes] | None:
        try:
            # Its stdin's write end is close-on-exec: only this process holds it, so the reaper
            # reads EOF exactly when this process is gone. Its own session: no signal meant for the
            # agent's terminal or a stage's group reaches it.
            return subprocess.Popen(
                ["/bin/sh", "-c", _REAPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("cannot start the stage reaper (%s); stages may outlive a killed agent", exc)
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
