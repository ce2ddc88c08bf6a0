"""Where the CLI keeps the API key `buildit login` got: one per server, in the user's config dir.

`$XDG_CONFIG_HOME/buildit/credentials.json` (default `~/.config/buildit/`), mode 0600, directory
0700. `BUILDIT_TOKEN` overrides it (CI jobs, scripts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from controller.privatefiles import write_private


def config_dir() -> Path:
    """The CLI's config directory."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "buildit"


def credentials_file() -> Path:
    """The file holding keys by server URL."""
    return config_dir() / "credentials.json"


def _load() -> dict[str, str]:
    try:
        data = json.loads(credentials_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def token_for(server: str) -> str | None:
    """The key to send to `server`: BUILDIT_TOKEN, else the one stored by `buildit login`."""
    return os.environ.get("BUILDIT_TOKEN") or _load().get(server.rstrip("/"))


def store(server: str, key: str) -> Path:
    """Keep `key` for `server` (private file, replaced atomically); returns the file."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    data = _load()
    data[server.rstrip("/")] = key
    path = credentials_file()
    write_private(path, json.dumps(data, indent=2))
    return path


def forget(server: str) -> bool:
    """Drop the key of `server`; whether there was one."""
    data = _load()
    if data.pop(server.rstrip("/"), None) is None:
        return False
    write_private(credentials_file(), json.dumps(data, indent=2))
    return True
