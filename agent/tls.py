"""TLS between this agent and the controller: the CA file, and what a failed handshake means.

Why a module of its own: gRPC reports every TLS mismatch as UNAVAILABLE, the code of a controller
that is merely restarting, so an agent with the wrong CA (or a plaintext agent pointed at a TLS
port) would retry forever and say only "unreachable". This module turns those failures into one
sentence that names the cause and the fix, so the agent can stop with it (`agent.session`). It uses
only the standard library (no grpc): `agent.settings` reads the CA file through it at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from pathlib import Path
from typing import Final

__all__ = ["TLS_SCHEME", "explain_handshake_failure", "read_ca_file", "speaks_tls"]

#: The controller address prefix that asks for TLS: grpcs://HOST:PORT.
TLS_SCHEME: Final = "grpcs://"

_PEM_CERT: Final = "-----BEGIN CERTIFICATE-----"
#: How long the probe for "does this port speak TLS?" may take; it runs once per failed first contact.
PROBE_TIMEOUT_S: Final = 3.0


def read_ca_file(path: Path) -> bytes:
    """The PEM certificates of `path`, checked to parse; ValueError naming the file otherwise.

    Why at start: a CA file that cannot be read or holds no certificate would otherwise show up
    only as a failed handshake, long after the agent started.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the CA file {path} (--ca-file): {exc.strerror or exc}") from None
    text = data.decode("ascii", "replace")
    if _PEM_CERT not in text:
        raise ValueError(
            f"the CA file {path} (--ca-file) holds no PEM certificate "
            f"(a '{_PEM_CERT}' block): pass the CA that signed the controller's certificate"
        )
    try:
        ssl.create_default_context(cadata=text)
    except ssl.SSLError as exc:
        raise ValueError(f"the CA file {path} (--ca-file) is not a valid PEM certificate: {exc}") from None
    return data


#: grpc core's wording of a failed TLS handshake, e.g. "Tls handshake failed (TSI_PROTOCOL_FAILURE):
#: SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: …", or of
#: a certificate for another name: "Custom verification check failed with error: UNAUTHENTICATED:
#: Hostname Verification Check failed."
_HANDSHAKE: Final = re.compile(
    r"(?:tls|ssl) handshake failed|TSI_|SSL_ERROR|verification check failed", re.IGNORECASE
)
_REASON: Final = re.compile(r"OPENSSL_internal:([A-Z_]+)(?::\s*([^:]+))?")


def explain_handshake_failure(details: str, target: str, ca_file: Path | None) -> str | None:
    """One sentence for a failed TLS handshake in a gRPC error's `details`, or None if it is not one.

    `target` is HOST:PORT, `ca_file` the --ca-file given (None: the system's CAs were used).
    """
    if not _HANDSHAKE.search(details):
        return None
    trusted = f"the CA in {ca_file} (--ca-file)" if ca_file else "the system's CAs (no --ca-file given)"
    reason = _REASON.search(details)
    code = reason.group(1) if reason else ""
    extra = f" ({reason.group(2).strip()})" if reason and reason.group(2) else ""
    if code == "CERTIFICATE_VERIFY_FAILED":
        return (
            f"TLS handshake with the controller at {target} failed: its certificate is not trusted by "
            f"{trusted}{extra}; pass --ca-file with the CA that signed the controller's certificate"
        )
    if code == "WRONG_VERSION_NUMBER":
        return (
            f"TLS handshake with the controller at {target} failed: it does not speak TLS on that port; "
            f"start the controller with --grpc-tls-cert and --grpc-tls-key, or connect without TLS "
            f"(--controller {target}, no grpcs://)"
        )
    if "hostname verification" in details.lower() or "peer name" in details.lower():
        return (
            f"TLS handshake with the controller at {target} failed: its certificate does not name "
            f"{target.rpartition(':')[0]}; connect by a name the certificate lists (subjectAltName), "
            "or give the controller a certificate for this name"
        )
    tail = details.split("last error:", 1)[-1].strip()
    return f"TLS handshake with the controller at {target} failed: {tail}"


async def speaks_tls(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Does `host:port` complete a TLS handshake (certificate not checked)?

    Why: a plaintext gRPC client sees a TLS server only as "Socket closed"; one handshake tells the
    person that the address needs grpcs://. Nothing is sent after the handshake.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), port, ssl=context)
        return True
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
