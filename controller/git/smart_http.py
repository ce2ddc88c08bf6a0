"""Serving a mirror over Git's smart-HTTP protocol, read-only (upload-pack: clone and fetch only).

Agents fetch the commit of a run from the controller's mirror, never from the origin. The web layer
(Litestar) maps two routes onto the two functions here and sends back their (content type, body):

    GET  <repo>/info/refs?service=git-upload-pack  -> advertisement(mirror_path, service)
    POST <repo>/git-upload-pack                     -> upload_pack(mirror_path, body, content_encoding)

Responses also need `Cache-Control: no-cache` (refs change). Framework-independent: no HTTP objects.

Protocol notes (dulwich's server side, which speaks protocol v0/v1 only):

* Git clients send `Git-Protocol: version=2`; it is ignored on purpose. The advertisement then has
  no "version 2" line, and the client falls back to v0 over stateless RPC, as it does with older
  servers. Nothing else is needed.
* In v0 a client may only `want` an advertised ref tip (we advertise no allow-*-sha1-in-want
  capability; dulwich rejects other wants). `git fetch URL <full-sha>` works when that commit is the
  tip of some ref, which is why `Mirror.pin` creates refs/buildit/pins/<sha>: a pinned commit stays
  fetchable by raw SHA after its branch moved on or was force-pushed.
* Incremental fetches negotiate with the client's `have` lines (multi_ack_detailed, no-done), so
  only missing objects are packed.
* The whole response is built in memory (the API returns bytes); fine for CI-sized repositories.
* Given a `Mirror`, its open repository is reused (pack indexes stay loaded between requests); the
  caller serialises requests with the mirror's other users (the repository lock).
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from controller.git.mirror import GitError, Mirror, is_git_dir

if TYPE_CHECKING:
    from dulwich.protocol import Protocol
    from dulwich.repo import Repo
    from dulwich.server import UploadPackHandler

UPLOAD_PACK = "git-upload-pack"
ADVERTISEMENT_CONTENT_TYPE = "application/x-git-upload-pack-advertisement"
RESULT_CONTENT_TYPE = "application/x-git-upload-pack-result"
REQUEST_CONTENT_TYPE = "application/x-git-upload-pack-request"
# A fetch request is a list of want/have lines: a few MB at most, even decompressed.
MAX_REQUEST_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def _opened(mirror: Path | Mirror) -> Iterator[Repo]:
    """The mirror's repository: a Mirror's own open one (its pack indexes already loaded, which
    saves most of a small fetch's cost), or one opened for this request from a path."""
    from dulwich.repo import Repo

    if isinstance(mirror, Mirror):
        yield mirror.repository()
        return
    if not (mirror.is_dir() and is_git_dir(mirror)):
        raise GitError(f"no mirror at {mirror}; the repository has not been fetched yet")
    repo = Repo(str(mirror))
    try:
        yield repo
    finally:
        repo.close()


def _handler_for(repo: Repo, proto: Protocol, *, advertise_refs: bool) -> UploadPackHandler:
    from dulwich.server import Backend, BackendRepo, UploadPackHandler

    class _OneRepository(Backend):
        def open_repository(self, path: str) -> BackendRepo:
            return repo

    return UploadPackHandler(
        _OneRepository(),
        ["/"],
        proto,
        stateless_rpc=True,
        advertise_refs=advertise_refs,
    )


def _where(mirror: Path | Mirror) -> Path:
    return mirror.path if isinstance(mirror, Mirror) else mirror


def advertisement(mirror: Path | Mirror, service: str) -> tuple[str, bytes]:
    """Answer `GET <repo>/info/refs?service=git-upload-pack`: the ref advertisement of the mirror.

    Returns (content type, body); the body starts with the "# service=git-upload-pack" pkt-line and a
    flush, as smart HTTP requires. Any other service (git-receive-pack: a push) raises GitError, since
    mirrors are read-only; so does a missing mirror.
    """
    from dulwich.protocol import Protocol

    if service != UPLOAD_PACK:
        raise GitError(
            f"service {service!r} refused: the controller's mirrors are read-only (only {UPLOAD_PACK}, "
            "i.e. clone and fetch); push to the origin repository instead"
        )
    out = BytesIO()
    proto = Protocol(BytesIO().read, out.write)
    with _opened(mirror) as repo:
        handler = _handler_for(repo, proto, advertise_refs=True)
        proto.write_pkt_line(f"# service={UPLOAD_PACK}\n".encode("ascii"))
        proto.write_pkt_line(None)
        handler.handle()
    return ADVERTISEMENT_CONTENT_TYPE, out.getvalue()


def _decode_body(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise GitError(
            f"unsupported Content-Encoding {content_encoding!r} for {UPLOAD_PACK}; send gzip or none"
        )
    try:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = decompressor.decompress(body, MAX_REQUEST_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise GitError(f"{UPLOAD_PACK} request body is not valid gzip: {exc}") from exc
    if len(data) > MAX_REQUEST_BYTES:
        raise GitError(f"{UPLOAD_PACK} request is larger than {MAX_REQUEST_BYTES} bytes once decompressed")
    return data


_SIDEBAND_MAX_DATA = 65515  # side-band-64k: 65520-byte packets, minus 4 length bytes and the channel byte


def _coalesce_pack_packets(response: bytes) -> bytes:
    """Re-frame the pack stream into full side-band-64k packets.

    dulwich writes one side-band packet per internal write (object headers are 4-20 bytes of pack
    data each), so a pack of N objects arrives in several times N tiny packets with 5 bytes of framing
    each. Consecutive channel-1 (pack data) packets are merged; everything else is kept as is.
    """
    out = bytearray()
    pending = bytearray()

    def flush_pending() -> None:
        for start in range(0, len(pending), _SIDEBAND_MAX_DATA):
            chunk = pending[start : start + _SIDEBAND_MAX_DATA]
            out.extend(f"{len(chunk) + 5:04x}".encode("ascii"))
            out.append(1)
            out.extend(chunk)
        pending.clear()

    pos = 0
    while pos + 4 <= len(response):
        try:
            size = int(response[pos : pos + 4], 16)
        except ValueError:  # not pkt-line framed: leave the rest untouched
            break
        if size >= 5 and response[pos + 4] == 1:
            pending.extend(response[pos + 5 : pos + size])
        else:
            flush_pending()
            end = pos + max(size, 4)
            out.extend(response[pos:end])
        pos += max(size, 4)
    flush_pending()
    out.extend(response[pos:])
    return bytes(out)


def upload_pack(mirror: Path | Mirror, body: bytes, content_encoding: str | None = None) -> tuple[str, bytes]:
    """Answer `POST <repo>/git-upload-pack` (stateless RPC): negotiate, then send the pack.

    `body` is the raw request body; `content_encoding` its Content-Encoding header (git gzips larger
    requests). Returns (content type, response body). A request Git refuses (wanting an object that is
    no advertised tip, a malformed request) is answered with an `ERR` pkt-line, which the git client
    prints as "remote error: ...": a clearer message than an HTTP status.
    """
    from dulwich.errors import GitProtocolError
    from dulwich.protocol import ReceivableProtocol, pkt_line

    data = _decode_body(body, content_encoding)
    out = BytesIO()
    proto = ReceivableProtocol(BytesIO(data).read, out.write)
    try:
        with _opened(mirror) as repo:
            handler = _handler_for(repo, proto, advertise_refs=False)
            handler.handle()
    except GitProtocolError as exc:
        if out.tell():  # part of a response went out already: no clean way to report in-band
            raise GitError(f"{UPLOAD_PACK} on {_where(mirror)} failed mid-response: {exc}") from exc
        message = str(exc)
        if message.startswith("Client wants invalid object"):
            sha = message.rsplit(" ", 1)[-1].strip("b'\"")
            message = f"upload-pack: not our ref {sha} (only branch tips and pinned commits can be fetched)"
        return RESULT_CONTENT_TYPE, pkt_line(f"ERR {message}\n".encode())
    return RESULT_CONTENT_TYPE, _coalesce_pack_packets(out.getvalue())
