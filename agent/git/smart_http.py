"""One-request fetch of a single commit over Git's smart-HTTP protocol (v0, stateless RPC).

Why not `git fetch`: it costs two HTTP round trips (the ref advertisement, then the negotiation) and
three processes (git, git-remote-http, fetch-pack or index-pack), about 40 ms for a one-commit fetch
from the controller's mirror, most of a stage's start-up time. The agent already knows exactly which
commit it wants and which commits its cache holds, so it can skip the advertisement and send one
request: `want <sha>`, the cache's recent commits as `have`s, and `done`. Smart HTTP is stateless,
so a server checks the want against its refs as it would after an advertisement: the controller pins
every commit it runs (`refs/buildit/pins/<sha>`), which makes the commit an advertised tip.

What comes back is written, raw, to a file: the caller indexes it with `git index-pack --fix-thin`
(the server may send a thin pack, deltas against objects the cache has). Anything unexpected (no
such endpoint, a redirect, an `ERR` line, a refused token, a proxy in the environment) raises
FastFetchUnavailable, and the caller falls back to `git fetch`, which handles every server and
explains every failure. The token goes only into the Authorization header, never into an error.
"""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Sequence
from typing import IO, Final
from urllib.parse import urlsplit

__all__ = ["FastFetchUnavailable", "fetch_pack", "proxy_configured", "upload_pack_request"]

_CAPABILITIES: Final = "side-band-64k ofs-delta thin-pack no-progress agent=buildit-agent"
_PROXY_VARIABLES: Final = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
_READ_SIZE: Final = 65536


class FastFetchUnavailable(Exception):
    """This server or setup needs the full `git fetch` (the message says why, without credentials)."""


def proxy_configured() -> bool:
    """True when the environment names a proxy: then `git fetch` (which honours proxies) is used."""
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


def _pkt(line: str) -> bytes:
    data = line.encode("ascii")
    return f"{len(data) + 4:04x}".encode("ascii") + data


def upload_pack_request(want: str, haves: Sequence[str]) -> bytes:
    """The body of the one POST: a want with our capabilities, a flush, the haves, `done`.

    Sending `done` at once (no negotiation rounds) lets the server pack everything the commit needs
    that none of the haves reach: at worst a few objects too many, never a second round trip.
    """
    body = [_pkt(f"want {want} {_CAPABILITIES}\n"), b"0000"]
    body.extend(_pkt(f"have {have}\n") for have in haves)
    body.append(_pkt("done\n"))
    return b"".join(body)


def _read_exact(response: http.client.HTTPResponse, size: int) -> bytes:
    data = response.read(size)
    if len(data) != size:
        raise FastFetchUnavailable("the server closed the connection in the middle of the pack")
    return data


def _read_pkt(response: http.client.HTTPResponse) -> bytes | None:
    """One pkt-line's payload; None for a flush packet."""
    header = _read_exact(response, 4)
    try:
        size = int(header, 16)
    except ValueError:
        raise FastFetchUnavailable("the server's answer is not Git's pkt-line format") from None
    if size == 0:
        return None
    if size < 4:
        raise FastFetchUnavailable("the server's answer has a malformed pkt-line")
    return _read_exact(response, size - 4)


def _connection(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise FastFetchUnavailable("the repository URL carries credentials")
    host = parts.hostname or ""
    path = parts.path.rstrip("/") + "/git-upload-pack"
    if parts.scheme == "https":
        context = ssl.create_default_context(
            cafile=os.environ.get("GIT_SSL_CAINFO") or None, capath=os.environ.get("GIT_SSL_CAPATH") or None
        )
        return http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=context), path
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, parts.port, timeout=timeout_s), path
    raise FastFetchUnavailable(f"scheme {parts.scheme!r} is not http(s)")


def fetch_pack(
    url: str, want: str, haves: Sequence[str], token: str, dest: IO[bytes], timeout_s: float
) -> int:
    """POST one upload-pack request to `url` and write the pack it answers to `dest`.

    Blocking (run it in a thread). Returns the pack's size in bytes. `timeout_s` bounds each socket
    operation. Raises FastFetchUnavailable when the caller should fall back to `git fetch`.
    """
    connection, path = _connection(url, timeout_s)
    try:
        try:
            connection.request(
                "POST",
                path,
                body=upload_pack_request(want, haves),
                headers={
                    "Content-Type": "application/x-git-upload-pack-request",
                    "Accept": "application/x-git-upload-pack-result",
                    "Authorization": f"Bearer {token}",
                    "User-Agent": "git/buildit-agent",
                },
            )
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise FastFetchUnavailable(f"request failed: {exc.__class__.__name__}") from None
        content_type = response.getheader("Content-Type", "")
        if response.status != 200 or content_type != "application/x-git-upload-pack-result":
            raise FastFetchUnavailable(f"HTTP {response.status} ({content_type or 'no content type'})")
        try:
            return _receive_pack(response, dest)
        except (OSError, http.client.HTTPException) as exc:
            raise FastFetchUnavailable(f"reading the pack failed: {exc.__class__.__name__}") from None
    finally:
        connection.close()


def _receive_pack(response: http.client.HTTPResponse, dest: IO[bytes]) -> int:
    """Skip the ACK/NAK lines, then demultiplex side-band-64k: channel 1 is the pack."""
    while True:
        line = _read_pkt(response)
        if line is None:
            continue
        if line.startswith(b"ERR "):
            raise FastFetchUnavailable(line[4:].decode("utf-8", "replace").strip()[:200])
        if line.startswith((b"NAK", b"ACK ")):
            continue
        break
    written = 0
    while line is not None:
        channel, payload = line[:1], line[1:]
        if channel == b"\x01":
            dest.write(payload)
            written += len(payload)
        elif channel == b"\x03":
            raise FastFetchUnavailable(payload.decode("utf-8", "replace").strip()[:200])
        elif channel != b"\x02":
            raise FastFetchUnavailable("the server's answer is not side-band framed")
        line = _read_pkt(response)
    if written == 0:
        raise FastFetchUnavailable("the server sent no pack")
    return written
