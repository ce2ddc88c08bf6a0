"""The controller's TLS certificate and key for gRPC: read and checked at start, named when wrong.

Why checked here and not left to grpc: grpc takes any bytes and fails later, at the first
handshake, with an OpenSSL code in its own log; a controller should refuse to start instead, with
a message that names the file and what is wrong with it. The check uses only the standard
library's `ssl` (the certificate parses, the key parses and belongs to the certificate); grpc gets
the same PEM bytes (controller.server).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["TlsFiles", "read_tls_files"]

_CERT_BLOCK: Final = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class TlsFiles:
    """The PEM bytes grpc.ssl_server_credentials takes: the certificate chain and its private key."""

    cert_pem: bytes
    key_pem: bytes


def read_tls_files(cert: Path, key: Path) -> TlsFiles:
    """Read and check `cert` (PEM chain, leaf first) and `key` (its unencrypted PEM private key).

    Raises ValueError with a one-line message naming the file that is unreadable, not PEM, or does
    not match the other.
    """
    cert_pem = _read(cert, "--grpc-tls-cert")
    key_pem = _read(key, "--grpc-tls-key")
    cert_text = cert_pem.decode("ascii", "replace")
    key_text = key_pem.decode("ascii", "replace")
    if _CERT_BLOCK not in cert_text:
        raise ValueError(
            f"the gRPC TLS certificate {cert} (--grpc-tls-cert) holds no PEM certificate "
            f"(a '{_CERT_BLOCK}' block)"
        )
    if "ENCRYPTED" in key_text:
        raise ValueError(
            f"the gRPC TLS key {key} (--grpc-tls-key) is encrypted; give the controller an unencrypted "
            "key readable only by its user (e.g. `openssl pkey -in KEY -out plain.key`, mode 0600)"
        )
    if "PRIVATE KEY-----" not in key_text:
        raise ValueError(
            f"the gRPC TLS key {key} (--grpc-tls-key) holds no PEM private key "
            "(a '-----BEGIN PRIVATE KEY-----' block)"
        )
    try:
        ssl.create_default_context(cadata=cert_text)
    except ssl.SSLError as exc:
        raise ValueError(
            f"the gRPC TLS certificate {cert} (--grpc-tls-cert) is not a valid PEM certificate: {exc}"
        ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "values mismatch" in str(exc):
            raise ValueError(
                f"the gRPC TLS key {key} (--grpc-tls-key) is not the private key of the certificate "
                f"in {cert} (--grpc-tls-cert)"
            ) from None
        raise ValueError(
            f"the gRPC TLS key {key} (--grpc-tls-key) cannot be used with {cert}: {exc}"
        ) from None
    except OSError as exc:  # the files changed between the two reads
        raise ValueError(f"cannot read {cert} or {key}: {exc.strerror or exc}") from None
    return TlsFiles(cert_pem, key_pem)


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({flag}): {exc.strerror or exc}") from None
