"""Keys the controller keeps in its data dir (created once, mode 0600)."""

from __future__ import annotations

import secrets
from pathlib import Path

from controller.privatefiles import write_private

SESSION_KEY = "session.key"


def session_key(data_dir: Path) -> str:
    """The secret CSRF tokens are signed with, the same across restarts (browsers keep their token).
    Replicas sharing a data volume share it; otherwise set the same file on each."""
    path = data_dir / SESSION_KEY
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_hex(32)
    write_private(path, value + "\n")
    return value
