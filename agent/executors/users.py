"""Running local stages as another Unix user (`buildit agent --run-as USER`, the agent as root).

Stage code run as the agent's own user can read whatever the agent can: its token file by absolute
path, every repository's Git cache, other stages' workspaces. Run as a separate, unprivileged user,
it cannot: the state dir and the Git cache are the agent's (0700), only the stage's workspace is
given to the user (chowned before its commands run), and its Git objects are copies rather than a
path into the cache. The commands start through util-linux `setpriv` (real and effective uid and
gid, the user's supplementary groups), inside the command's PID namespace when there is one.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunAs", "chown_tree", "resolve_run_as"]


@dataclass(frozen=True)
class RunAs:
    """The user local stages run as."""

    name: str
    uid: int
    gid: int
    home: str

    def command(self, setpriv: str) -> tuple[str, ...]:
        """The `setpriv` prefix that drops to this user before exec."""
        return (setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--")

    def environment(self) -> dict[str, str]:
        """What a login would set for the user: HOME, USER, LOGNAME (the agent's are root's)."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def resolve_run_as(name: str) -> RunAs:
    """The user named `name` (or a numeric uid); ValueError when it cannot be used.

    Why so strict: running stages as root would defeat the point, and only root can switch users.
    """
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise ValueError(f"--run-as {name}: no such user on this host") from None
    if entry.pw_uid == 0:
        raise ValueError(f"--run-as {name}: stages must run as an unprivileged user, not root")
    if os.geteuid() != 0:
        raise ValueError(f"--run-as {name}: only an agent running as root can run stages as another user")
    if shutil.which("setpriv") is None:
        raise ValueError(f"--run-as {name}: needs util-linux's setpriv (apt-get install util-linux)")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give `root` and everything under it to uid:gid, never following a symlink. Blocking.

    Runs before the stage's commands, when only the agent wrote the tree (checkout, artifacts).
    """
    os.lchown(root, uid, gid)
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(directory, name), uid, gid)
