"""The CLI's one client of a controller: JSON and text requests to the REST API, and the /ws socket.

Plain urllib for REST (client verbs start fast and import nothing of the server stack); the
`websockets` client, imported when a verb follows something live. Every request is signed in
with the key `buildit login` stored for that server (or BUILDIT_TOKEN) and acts in BUILDIT_TENANT
when set. A refusal becomes an ApiError with the API's own `detail`; a controller that does not
answer, one saying which address was tried and where it came from (controller.cli.address).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from controller.cli import credentials
from controller.cli.address import DEFAULT_SERVER, Server, describe_unreachable, resolve
from controller.cli.errors import ApiError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

__all__ = ["DEFAULT_SERVER", "Server", "call", "call_text", "open_socket", "server_flag", "server_of"]

TIMEOUT_S = 180


def server_of(args: argparse.Namespace) -> Server:
    """The controller a verb talks to: `--server`, BUILDIT_URL, a local controller's record, the default."""
    return resolve(getattr(args, "server", None))


def server_flag(parser: argparse.ArgumentParser) -> None:
    """The `--server` option every client verb takes."""
    parser.add_argument(
        "--server",
        help="controller URL (default: env BUILDIT_URL, else the controller `buildit up` runs from "
        f"./.buildit, else {DEFAULT_SERVER})",
    )


def _headers(server: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    sent = dict(extra or {})
    token = credentials.token_for(server)
    if token and "Authorization" not in sent:
        sent["Authorization"] = f"Bearer {token}"
    tenant = os.environ.get("BUILDIT_TENANT")
    if tenant:
        sent["X-BuildIt-Tenant"] = tenant
    return sent


def _refusal(server: str, exc: urllib.error.HTTPError) -> ApiError:
    text = exc.read().decode("utf-8", "replace")
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        detail = text
    if exc.code == 401 and "Authorization: Basic" not in str(detail):
        detail = f"{detail} (run `buildit login --server {server}` or set BUILDIT_TOKEN)"
    return ApiError(f"{exc.code}: {detail}")


def _send(server: str, request: urllib.request.Request) -> tuple[bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        raise _refusal(server, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(describe_unreachable(server, getattr(exc, "reason", exc))) from None


def call(server: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """One JSON request to the REST API; the parsed answer (None for an empty one)."""
    data = json.dumps(body).encode() if body is not None else None
    sent = _headers(server, {"Content-Type": "application/json", **(headers or {})})
    payload, _ = _send(server, urllib.request.Request(server + path, data=data, method=method, headers=sent))
    return json.loads(payload) if payload else None


def call_text(server: str, path: str) -> tuple[bytes, dict[str, str]]:
    """A GET of a plain-text resource (a stage log): its bytes and the response headers."""
    request = urllib.request.Request(server + path, method="GET", headers=_headers(server))
    return _send(server, request)


def open_socket(server: str) -> ClientConnection:
    """The controller's live-update socket (/ws), signed in like the REST calls."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    url = "ws" + server.removeprefix("http") + "/ws"
    try:
        return connect(url, additional_headers=_headers(server), open_timeout=30, max_size=16 * 2**20)
    except InvalidStatus as exc:
        status = exc.response.status_code
        body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
        try:
            detail = json.loads(body).get("detail", body)
        except (ValueError, AttributeError):
            detail = body
        hint = f" (run `buildit login --server {server}` or set BUILDIT_TOKEN)" if status == 401 else ""
        raise ApiError(f"{status}: {detail or 'the live socket was refused'}{hint}") from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise ApiError(describe_unreachable(server, exc)) from None
