"""The agent's small persistent state: its identity and token, in `<state_dir>/agent.json`.

An agent registers once and keeps the returned token, so a restart (a crash, an upgrade, a rebooted
host) comes back as the same agent rather than a new one with the old one left offline in the fleet.
The token is a long-lived secret: the file is created with mode 0600 (in a 0700 directory) before
any byte is written, and it is replaced atomically (write a temporary file, fsync, rename), so a crash
mid-write leaves either the old state or the new one, never half a token.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "STATE_FILE",
    "AgentState",
    "StateError",
    "clear_state",
    "load_state",
    "save_state",
    "write_private",
]

STATE_FILE: Final = "agent.json"


class StateError(Exception):
    """The state file exists but cannot be used; the message says how to recover."""


@dataclass(frozen=True)
class AgentState:
    """Who this agent is to one controller."""

    agent_id: str
    agent_token: str
    #: The controller address (HOST:PORT) the token belongs to.
    controller: str
    #: The controller's heartbeat interval when it registered us; a hint until it says otherwise.
    heartbeat_interval_ms: int = 0


def load_state(state_dir: Path) -> AgentState | None:
    """The stored state, or None when the agent never registered here.

    Raises StateError for a file that exists but is unreadable or malformed: silently registering
    again would leave the old agent behind in the fleet, so a person should decide.
    """
    path = state_dir / STATE_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
        state = AgentState(
            agent_id=str(data["agent_id"]),
            agent_token=str(data["agent_token"]),
            controller=str(data["controller"]),
            heartbeat_interval_ms=int(data.get("heartbeat_interval_ms", 0)),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise StateError(
            f"{path} is not a valid agent state file; delete it to register this agent again"
        ) from None
    if not state.agent_id or not state.agent_token:
        raise StateError(f"{path} has an empty agent id or token; delete it to register this agent again")
    return state


def save_state(state_dir: Path, state: AgentState) -> None:
    """Write the state atomically with mode 0600, creating the directory (0700) when needed."""
    write_private(
        state_dir, STATE_FILE, (json.dumps(asdict(state), indent=2, sort_keys=True) + "\n").encode()
    )


def write_private(state_dir: Path, name: str, data: bytes) -> None:
    """Replace `<state_dir>/<name>` atomically with `data`, mode 0600 (the directory 0700).

    Why shared: everything the agent keeps in its state dir is private to it (the token, the
    stage results kept for the next start), and a crash mid-write must leave the old file or
    the new one, never half of either.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / name
    tmp = state_dir / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # O_CREAT's mode passed the umask; the token must stay private
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
    _fsync_dir(state_dir)


def clear_state(state_dir: Path) -> None:
    """Forget the stored identity (e.g. the controller no longer knows our token)."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable too (a crash right after it must not bring back the old file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
