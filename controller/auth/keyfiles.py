"""Keys the controller keeps in its data dir (created once, mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.replace(tmp, path)
    return value
