#!/usr/bin/env python3
"""The container image's HEALTHCHECK (installed as /usr/local/bin/buildit-healthcheck).

One image runs both roles, so the check reads which one this container runs from the command line
of its main process (PID 1 is `tini -- buildit VERB ...`) and the container's environment:

- `controller` (and `up`): healthy when GET /health on its HTTP port answers `{"status": "ok"}`;
- `agent`: an agent serves no endpoint. It counts as healthy once it has registered (its token,
  `agent.json`, is in its state dir), so a container whose agent cannot reach its controller or is
  refused stays `starting`/`unhealthy`. It says nothing about the connection after that.

Exit 0 healthy, 1 unhealthy (Docker's contract), with one line saying why.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path


def main_command() -> list[str]:
    """The arguments after `buildit` in PID 1's command line (empty when it is not buildit)."""
    raw = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    args = [part.decode(errors="replace") for part in raw if part]
    for index, arg in enumerate(args):
        if os.path.basename(arg) == "buildit":
            return args[index + 1 :]
    return []


def option(args: list[str], name: str, env: str, default: str) -> str:
    """A flag's value (`--name V` or `--name=V`), else the environment variable, else the default:
    the order BuildIt itself resolves settings in."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return os.environ.get(env) or default


def check_controller(args: list[str]) -> str | None:
    """None when the controller's /health answers ok, else why not."""
    host = option(args, "--host", "BUILDIT_HTTP_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = option(args, "--http-port", "BUILDIT_HTTP_PORT", "8080")
    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if body.get("status") != "ok":
        return f"{url} answered {body!r}"
    return None


def check_agent(args: list[str]) -> str | None:
    """None once the agent has registered (its token is stored), else why not."""
    state_dir = Path(option(args, "--state-dir", "BUILDIT_AGENT_STATE_DIR", ".buildit-agent"))
    if not state_dir.is_absolute():
        state_dir = Path(os.readlink("/proc/1/cwd")) / state_dir
    token = state_dir / "agent.json"
    if not token.is_file():
        return f"the agent has not registered yet (no {token})"
    return None


def main() -> int:
    """Run the check of this container's role."""
    args = main_command()
    verb = args[0] if args else ""
    if verb in ("controller", "up"):
        problem = check_controller(args)
    elif verb == "agent":
        problem = check_agent(args)
    else:
        print(f"buildit-healthcheck: nothing to check for `buildit {verb}`", file=sys.stderr)
        return 0
    if problem:
        print(f"buildit-healthcheck: unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"buildit-healthcheck: {verb} healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
