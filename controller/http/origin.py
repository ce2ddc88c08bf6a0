"""Is a browser request same-origin? The test `/ws` and every state-changing request go through.

Why: a page on another site can make the operator's browser open a WebSocket to the controller or
POST to it; the browser then says where the page came from in `Origin`. A request is accepted when
it has no Origin (curl, the CLI, agents, forges: not a browser acting for another site), or when
the Origin is the controller itself: the host:port the request was sent to (its Host header), or
the origin of BUILDIT_PUBLIC_URL (the address people use behind a proxy).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

__all__ = ["origin_of", "same_origin"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, port defaulted by scheme; None when unusable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_header(value: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a Host header; None when malformed."""
    try:
        parts = urlsplit(f"//{value.strip()}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def same_origin(origin: str | None, host: str | None, public_url: str = "") -> bool:
    """True when a request with this `Origin` and `Host` may act: no Origin, or the controller's own.

    A Host without a port matches an Origin on its scheme's default port (a proxy on 443 or 80).
    "null" (sandboxed frames, file: pages) and anything unparsable is another origin.
    """
    if origin is None:
        return True
    seen = origin_of(origin)
    if seen is None:
        return False
    if public_url and origin_of(public_url) == seen:
        return True
    target = _host_header(host) if host else None
    if target is None or not target[0]:
        return False
    target_host, target_port = target
    _, origin_host, origin_port = seen
    if target_port is None:
        return origin_host == target_host and origin_port == _DEFAULT_PORTS[seen[0]]
    return (origin_host, origin_port) == (target_host, target_port)
