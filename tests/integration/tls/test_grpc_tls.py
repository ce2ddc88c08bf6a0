"""gRPC over TLS between real `buildit agent` and `buildit controller` processes on loopback.

The CA and the controller's certificate (subjectAltName 127.0.0.1 and localhost) are made in the
test (tests.tlscerts). A TLS mismatch must stop the agent with a sentence naming the cause, never
leave it retrying in silence.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.fleet.harness import BUILDIT, FAST, Controller, Proc, wait_for
from tests.tlscerts import Issued, make_ca, make_server_cert


@pytest.fixture
def ca(tmp_path: Path) -> Issued:
    return make_ca(tmp_path / "pki")


@pytest.fixture
def tls_controller(tmp_path: Path, ca: Issued) -> Iterator[Controller]:
    cert = make_server_cert(tmp_path / "pki", ca)
    env = {"BUILDIT_GRPC_TLS_CERT": str(cert.cert), "BUILDIT_GRPC_TLS_KEY": str(cert.key)}
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}", env=env).start()
    try:
        yield controller
    finally:
        controller.stop()


def agent(tmp_path: Path, controller: str, name: str, *extra: str) -> Proc:
    """`buildit agent` (local executor) at `controller`, as an operator would start it."""
    args = [
        BUILDIT,
        "agent",
        "--controller",
        controller,
        "--registration-token",
        "test-registration-token",
        "--name",
        name,
        "--executor",
        "local",
        "--state-dir",
        str(tmp_path / f"agent-{name}"),
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    return Proc(args, {**env, **FAST}, tmp_path)


def exits(proc: Proc, timeout: float = 30) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.stop()
        raise AssertionError(f"the agent kept running:\n{proc.output}") from None


def test_an_agent_registers_and_runs_a_stage_over_tls(
    tls_controller: Controller, ca: Issued, tmp_path: Path
) -> None:
    controller = tls_controller
    assert controller.proc is not None
    assert f"agents (gRPC):       127.0.0.1:{controller.grpc_port} (TLS)" in controller.proc.output
    assert "--controller grpcs://HOST:" in controller.proc.output
    proc = agent(tmp_path, f"grpcs://127.0.0.1:{controller.grpc_port}", "secure", "--ca-file", str(ca.cert))
    try:
        wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")
        pipeline = controller.create_pipeline('pipeline "over-tls"\nstage "hello" { run "echo over tls"; }\n')
        number = controller.trigger(pipeline)
        run = controller.wait_run(pipeline, number)
        assert run["status"] == "succeeded", (run, proc.output)
        assert run["stages"][0]["agent"] == "secure"
        assert controller.log(pipeline, number, "hello").splitlines()[-1] == "over tls"
        # Integrations (grpcurl, the health check) speak TLS to the same port.
        credentials = grpc.ssl_channel_credentials(ca.cert.read_bytes())
        with grpc.secure_channel(f"localhost:{controller.grpc_port}", credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.stop()
    # The same agent (its stored token: no registration, the Lease stream is its first call)
    # restarted without TLS is told so too.
    again = agent(tmp_path, f"127.0.0.1:{controller.grpc_port}", "secure")
    assert exits(again) == 1
    assert "using the stored identity" in again.output
    assert "speaks TLS and this agent does not: write the address as --controller grpcs://" in again.output


def test_an_agent_with_the_wrong_ca_stops_saying_so(tls_controller: Controller, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other", name="Some other CA")
    proc = agent(
        tmp_path, f"grpcs://127.0.0.1:{tls_controller.grpc_port}", "untrusting", "--ca-file", str(other.cert)
    )
    assert exits(proc) == 1
    assert (
        f"buildit agent: TLS handshake with the controller at 127.0.0.1:{tls_controller.grpc_port} failed: "
        f"its certificate is not trusted by the CA in {other.cert} (--ca-file)"
    ) in proc.output
    assert tls_controller.agents() == []


def test_a_plaintext_agent_at_a_tls_controller_stops_saying_so(
    tls_controller: Controller, tmp_path: Path
) -> None:
    proc = agent(tmp_path, f"127.0.0.1:{tls_controller.grpc_port}", "plain")
    assert exits(proc) == 1
    assert (
        f"buildit agent: the controller at 127.0.0.1:{tls_controller.grpc_port} speaks TLS and this agent "
        f"does not: write the address as --controller grpcs://127.0.0.1:{tls_controller.grpc_port}"
    ) in proc.output
    assert tls_controller.agents() == []


def test_a_tls_agent_at_a_plaintext_port_stops_saying_so(ca: Issued, tmp_path: Path) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        proc = agent(tmp_path, f"grpcs://127.0.0.1:{port}", "hopeful", "--ca-file", str(ca.cert))
        assert exits(proc) == 1
    finally:
        server.stop(None)
    assert f"controller at 127.0.0.1:{port} failed: it does not speak TLS on that port" in proc.output


def test_the_controller_refuses_to_start_with_half_or_broken_tls(tmp_path: Path, ca: Issued) -> None:
    cert = make_server_cert(tmp_path / "pki", ca)
    data = str(tmp_path / "data")
    base = [BUILDIT, "controller", "--data-dir", data, "--http-port", "0", "--grpc-port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}

    def start(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *extra], env=env, capture_output=True, text=True, timeout=60)

    half = start("--grpc-tls-cert", str(cert.cert))
    assert half.returncode == 2
    assert "--grpc-tls-cert needs --grpc-tls-key too" in half.stderr
    wrong_key = start("--grpc-tls-cert", str(cert.cert), "--grpc-tls-key", str(ca.key))
    assert wrong_key.returncode == 2
    assert f"the gRPC TLS key {ca.key} (--grpc-tls-key) is not the private key" in wrong_key.stderr
    missing = start("--grpc-tls-cert", str(tmp_path / "none.pem"), "--grpc-tls-key", str(cert.key))
    assert missing.returncode == 2
    assert f"cannot read {tmp_path / 'none.pem'} (--grpc-tls-cert)" in missing.stderr


def test_buildit_up_serves_tls_and_its_embedded_agent_trusts_a_self_signed_certificate(
    tmp_path: Path,
) -> None:
    cert = make_server_cert(tmp_path / "pki", None)
    done = tmp_path / "stage-ran"
    pipeline = tmp_path / "up-tls.kdl"
    pipeline.write_text(f'pipeline "up-tls"\nstage "s" {{ run "echo over tls > {done}"; }}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    env["BUILDIT_LOG_LEVEL"] = "info"  # `buildit up` logs warnings only by default; the check reads INFO
    up = Proc(
        [
            BUILDIT,
            "up",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--executor",
            "local",
            "--grpc-tls-cert",
            str(cert.cert),
            "--grpc-tls-key",
            str(cert.key),
            "--pipelines",
            str(pipeline),
            "--trigger",
            "up-tls",
        ],
        env,
        tmp_path,
    )
    try:
        wait_for(lambda: "embedded agent" in up.output or up.proc.poll() is not None, 60, "the banner")
        assert "(TLS)" in up.output, up.output
        # The embedded agent registered over TLS and ran the triggered stage.
        wait_for(lambda: done.exists() and done.read_text() == "over tls\n", 60, "the stage to run")
        assert "registered with grpcs://127.0.0.1:" in up.output, up.output
    finally:
        up.stop()
