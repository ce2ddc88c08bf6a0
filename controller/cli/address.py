"""Which controller a client verb talks to, and the address a local controller leaves for it.

Every client verb (`repo`, `trigger`, `runs`, `logs`, `cancel`, `secret`, `login`, `apikey` …)
resolves its controller here, in this order:

1. `--server URL`;
2. `BUILDIT_URL`;
3. the address a controller on this machine recorded in its data dir: `buildit up` and
   `buildit controller` write `<data dir>/controller.json` (0600) once they serve, and remove it at
   a clean stop. The data dir is `BUILDIT_DATA_DIR`, else the nearest `.buildit/` in the current
   directory or one of its parents (where `buildit up` puts it by default). A file whose process is
   gone, or whose address does not answer `/health`, is passed over (a crash leaves it behind);
4. the default, `http://127.0.0.1:8080` (the port from `BUILDIT_HTTP_PORT` when that is set, as
   `buildit up` would bind it).

The result is a `Server`: the URL as a `str` (what the credentials file is keyed by) that also
remembers where it came from, so "cannot reach" errors say which address was tried and why.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.cli.errors import UsageError

ADDRESS_FILE = "controller.json"
DEFAULT_DATA_DIR = ".buildit"
DEFAULT_PORT = 8080
DEFAULT_SERVER = f"http://127.0.0.1:{DEFAULT_PORT}"
#: How long a recorded address may take to answer /health before it is passed over.
LIVENESS_TIMEOUT_S = 2.0
_HOW_TO = "set --server or BUILDIT_URL, or start one with buildit up"


class Server(str):
    """A controller's base URL (no trailing slash) that remembers where it came from."""

    origin: str

    def __new__(cls, url: str, origin: str) -> Server:
        """`origin` completes "no controller at URL (…)": e.g. "from --server"."""
        server = super().__new__(cls, url.rstrip("/"))
        server.origin = origin
        return server


def describe_unreachable(server: str, reason: object) -> str:
    """The one-line error for a controller that does not answer: the address, its origin, the cause."""
    origin = getattr(server, "origin", "")
    if isinstance(reason, OSError) and reason.strerror:
        reason = reason.strerror.lower()  # "connection refused", not "[Errno 111] Connection refused"
    where = f" ({origin})" if origin else ""
    return f"no controller at {server}{where}: {reason}"


def resolve(flag: str | None) -> Server:
    """The controller to talk to (see the module docstring for the order)."""
    if flag:
        return Server(_checked_url(flag, "--server"), "from --server")
    env = os.environ.get("BUILDIT_URL", "").strip()
    if env:
        return Server(_checked_url(env, "BUILDIT_URL"), "from BUILDIT_URL")
    passed_over: list[str] = []
    for path in _address_files():
        url, why_not = _live_address(path)
        if url is not None:
            return Server(url, f"recorded by a running controller in {_shown(path)}")
        if why_not:
            passed_over.append(f"{_shown(path)} names {why_not}")
    note = f"; passed over {'; '.join(passed_over)}" if passed_over else ""
    port = os.environ.get("BUILDIT_HTTP_PORT", "").strip()
    if port.isdigit() and 0 < int(port) < 65536:
        return Server(
            f"http://127.0.0.1:{int(port)}", f"the default with BUILDIT_HTTP_PORT={port}; {_HOW_TO}{note}"
        )
    return Server(DEFAULT_SERVER, f"the default; {_HOW_TO}{note}")


def _checked_url(url: str, where: str) -> str:
    text = url.strip()
    if not text.startswith(("http://", "https://")) or len(text) <= len("https://"):
        raise UsageError(f"{where} {url!r}: expected the controller's URL, e.g. http://127.0.0.1:8080")
    return text


def _address_files() -> list[Path]:
    """Where a local controller may have recorded its address, nearest first."""
    data_dir = os.environ.get("BUILDIT_DATA_DIR", "").strip()
    if data_dir:
        return [Path(data_dir) / ADDRESS_FILE]
    here = Path.cwd()
    return [d / DEFAULT_DATA_DIR / ADDRESS_FILE for d in (here, *here.parents)]


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _live_address(path: Path) -> tuple[str | None, str]:
    """(the URL in `path` if its controller answers, else None; why it was passed over, or "")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ""  # no file (the usual case), or not ours to read
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None, ""
    pid = data.get("pid")
    if isinstance(pid, int) and not _process_exists(pid):
        return None, f"{url}, whose process {pid} is gone"
    if not _answers(url):
        return None, f"{url}, which does not answer"
    return url.rstrip("/"), ""


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a number we cannot check): let /health decide
    return True


def _answers(url: str) -> bool:
    """Whether a BuildIt controller serves `url` (its public /health says ok)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=LIVENESS_TIMEOUT_S) as answer:
            body = json.loads(answer.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok"


# ------------------------------------------------------------------ the controller's side


def local_url(http_host: str, http_port: int) -> str:
    """The URL a client on this machine reaches a controller bound to `http_host` at."""
    host = http_host.strip() or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{http_port}"


def record(data_dir: Path, http_host: str, http_port: int, grpc_port: int) -> Path | None:
    """Write `<data dir>/controller.json` so client verbs on this machine find this controller.

    Returns the file (to `forget` at a clean stop), or None when it could not be written: the
    controller runs anyway, and clients fall back to BUILDIT_URL or the default.
    """
    from controller import __version__
    from controller.privatefiles import write_private

    path = data_dir / ADDRESS_FILE
    body: dict[str, Any] = {
        "url": local_url(http_host, http_port),
        "grpc_port": grpc_port,
        "pid": os.getpid(),
        "version": __version__,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        write_private(path, json.dumps(body, indent=2) + "\n")
    except OSError:
        return None
    return path


def forget(path: Path | None) -> None:
    """Remove the address file at a clean stop, if it is still this process's."""
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("pid") == os.getpid():
            path.unlink()
