"""agent.tls: what a failed handshake means, in one sentence, and the probe for a TLS port.

The `details` below are transcribed from grpc 1.85's real answers on loopback (wrong CA, TLS agent
at a plaintext port, certificate for another name); the probe runs against a real TLS listener.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from agent.tls import explain_handshake_failure, speaks_tls
from tests.tlscerts import make_ca, make_server_cert

WRONG_CA = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:36521: Tls handshake failed "
    "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
    "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK"
)
PLAIN_PORT = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:36369: Tls handshake failed "
    "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:"
    "WRONG_VERSION_NUMBER: Invalid certificate verification context: OK"
)
WRONG_NAME = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.2:38733: Custom verification "
    "check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
)
REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused"
)


def test_an_untrusted_certificate_names_the_ca_in_use() -> None:
    text = explain_handshake_failure(WRONG_CA, "ci:9090", Path("/etc/ca.pem"))
    assert text is not None
    assert text.startswith("TLS handshake with the controller at ci:9090 failed: its certificate is not")
    assert "trusted by the CA in /etc/ca.pem (--ca-file) (unable to get local issuer certificate)" in text
    system = explain_handshake_failure(WRONG_CA, "ci:9090", None)
    assert system is not None and "the system's CAs (no --ca-file given)" in system


def test_a_tls_agent_at_a_plaintext_port_is_told_so() -> None:
    text = explain_handshake_failure(PLAIN_PORT, "ci:9090", None)
    assert text is not None and "it does not speak TLS on that port" in text
    assert "--grpc-tls-cert" in text and "--controller ci:9090, no grpcs://" in text


def test_a_certificate_for_another_name() -> None:
    text = explain_handshake_failure(WRONG_NAME, "127.0.0.2:4000", None)
    assert text is not None and "does not name 127.0.0.2" in text


def test_other_failures_are_not_tls_failures() -> None:
    assert explain_handshake_failure(REFUSED, "ci:9090", None) is None
    assert explain_handshake_failure("Socket closed", "ci:9090", None) is None


async def test_the_probe_tells_a_tls_port_from_a_plaintext_one(tmp_path: Path) -> None:
    cert = make_server_cert(tmp_path, make_ca(tmp_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    tls_server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
    plain_server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        tls_port = tls_server.sockets[0].getsockname()[1]
        plain_port = plain_server.sockets[0].getsockname()[1]
        assert await speaks_tls("127.0.0.1", tls_port)
        assert not await speaks_tls("127.0.0.1", plain_port, timeout=1.0)
    finally:
        tls_server.close()
        plain_server.close()
    # Nothing listening at all.
    assert not await speaks_tls("127.0.0.1", tls_port, timeout=1.0)
