"""What every container executor shares: the stage's shell script and where in the container it runs.

Why its own module: the Docker executor and the Kubernetes pod builder (`agent.executors.kubepod`) must
run a stage the same way (same headers, same stop-at-first-failure, same workspace path), and the pod
builder must not import the docker SDK that `agent.executors.docker` owns. Pure, standard library only.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from typing import Final

__all__ = [
    "HEADER",
    "HEADER_MARKER",
    "LAST",
    "LINE",
    "PIECE",
    "WORKSPACE_MOUNT",
    "Output",
    "add_line",
    "add_piece",
    "container_workdir",
    "render_script",
]

WORKSPACE_MOUNT: Final = "/workspace"
HEADER_MARKER: Final = "\x1e\x1f"  # RS US: printed before each command's number, never shown


def render_script(commands: Sequence[str], *, stdin_watcher: bool = True) -> str:
    """Build the POSIX shell script that runs `commands` in one container.

    One script (rather than one `exec` per command) keeps a stage to a single container start, which
    is what makes the executor about as fast as `docker run --rm`. Each command runs in its own
    `sh -c` so that `exit`, `set -e` or `cd` in one command cannot change how the next one runs, and
    each is passed as one quoted word so no command text is re-interpreted by the outer script.
    `exec 2>&1` merges stderr into stdout inside the container, which keeps the two in true order.
    Headers are `HEADER_MARKER` and the command's number (1-based), so the reader can put them on
    their own line even when the previous command's output did not end with a newline (`printf
    x`), and knows which command runs (the agent writes the header line, with the command's text).
    Output inside the container could print a header too: the reader takes only the next number
    in sequence as one (a forged one can at most announce the next command early, in its own log).

    `stdin_watcher` (Docker): the container's stdin is the agent's attach connection (`StdinOnce`):
    Docker closes it when that connection ends, which, while the stage runs, means the agent died. A
    watcher started first blocks reading it and then kills every process in the container and ends
    the script, so a killed agent's stage does not keep running (and run twice once retried
    elsewhere). Without it (Kubernetes): a pod's container has no stdin (it reads as end of file at
    once, so the watcher would kill the stage at its start), and a stage pod must outlive an agent
    restart anyway (the new agent re-attaches to it; `activeDeadlineSeconds` is the backstop).
    Either way, commands read /dev/null.
    """
    if stdin_watcher:
        lines = [
            "exec 2>&1",
            "exec 3<&0 </dev/null",
            "(read _ <&3; kill -9 -1 2>/dev/null; kill -TERM 1) &",
            "exec 3<&-",
        ]
    else:
        lines = ["exec 2>&1 </dev/null"]
    lines.append("trap 'exit 137' TERM")
    for index, command in enumerate(commands, 1):
        lines.append(f"printf '\\036\\037%s\\n' {index}")
        lines.append(f"sh -c {shlex.quote(command)} || exit $?")
    return "\n".join(lines) + "\n"


def container_workdir(workdir: str) -> str:
    """Map a stage's relative `workdir` to the directory inside the container.

    Rejects absolute paths and `..` escapes so a pipeline cannot point a stage outside its workspace.
    """
    if posixpath.isabs(workdir):
        raise ValueError(f"workdir '{workdir}' must be relative to the workspace")
    path = posixpath.normpath(posixpath.join(WORKSPACE_MOUNT, workdir))
    if path != WORKSPACE_MOUNT and not path.startswith(WORKSPACE_MOUNT + "/"):
        raise ValueError(f"workdir '{workdir}' points outside the workspace")
    return path


# What a container executor's reader hands on, as (text, kind) pairs, kind one of these. Shared by the
# Docker and Kubernetes executors, which both read the script's output as one byte stream.
LINE: Final = 0
PIECE: Final = 1  # a piece of a cut line (see agent.executors.lines)
LAST: Final = 2  # the piece that ends a cut line
HEADER: Final = 3  # a command header: the text is its number

Output = list[tuple[str, int]]


def add_line(out: Output, text: str) -> None:
    """One output line, or the unterminated output before a command header plus the header.

    Why here: the header is this module's (`render_script` prints it); every reader of the script's
    output must split it off the same way.
    """
    at = text.find(HEADER_MARKER)
    if at < 0:
        out.append((text, LINE))
        return
    if at:
        out.append((text[:at], LINE))
    out.append((text[at + len(HEADER_MARKER) :], HEADER))


def add_piece(out: Output, text: str, last: bool) -> None:
    """A piece of a cut line; a command header in it ends the cut line (see `add_line` for why here)."""
    at = text.find(HEADER_MARKER)
    if at < 0:
        out.append((text, LAST if last else PIECE))
        return
    # A command header ends the cut line before it (the header itself is never that long).
    out.append((text[:at], LAST))
    out.append((text[at + len(HEADER_MARKER) :], HEADER))
