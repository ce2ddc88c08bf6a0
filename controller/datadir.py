"""The controller's data directory: private to its user, and locked while a controller uses it.

It holds the SQLite database, the master key, logs, artifacts and repository mirrors, so it is
created (or narrowed) to mode 0700 at every start: nobody else on the machine reads any of it.

`controller.lock` in it is held (a shared `flock`) by every running controller and taken
exclusively by offline maintenance (`buildit admin ...`), which so knows whether a controller is
running on this data directory. The lock dies with its process, so a crash leaves nothing stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "controller.lock"


def make_private(data_dir: Path) -> None:
    """Create `data_dir` with mode 0700, or take group and world access off an existing one."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(0o700)


class DataDirBusy(Exception):
    """A controller is running on the data directory (offline maintenance must wait)."""


class DataDirLock:
    """A held lock on a data directory; `release()` (or the process ending) lets it go."""

    def __init__(self, data_dir: Path, exclusive: bool) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if exclusive:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                # Shared: controllers never wait for each other here, only exclude maintenance.
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            who = "a controller is running on" if exclusive else "offline maintenance is running on"
            raise DataDirBusy(f"{who} {data_dir} (it holds {self.path})") from None

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def running_lock(data_dir: Path) -> DataDirLock:
    """The lock a controller holds while it runs; DataDirBusy while maintenance has the directory."""
    return DataDirLock(data_dir, exclusive=False)


def maintenance_lock(data_dir: Path) -> DataDirLock:
    """The lock offline maintenance holds; DataDirBusy while any controller runs on the directory."""
    return DataDirLock(data_dir, exclusive=True)
