"""Finding the controller (controller.cli.address): `--server`, then BUILDIT_URL, then the address a
local `buildit up` records in its data dir, then the default; and the record's life with its
controller. The first test is the real thing: `buildit up` on a port the client was never told,
found from a subdirectory with no flag; the others check the order and the record against a
loopback stand-in that answers /health as a controller does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controller.cli import address
from controller.cli.errors import UsageError
from tests.integration.fleet.harness import BUILDIT, Proc, wait_for
from tests.support.credentials import admin_password


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env.update(extra)
    return env


def cli(cwd: Path, env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUILDIT, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_a_buildit_up_on_another_port_is_found_without_flags(tmp_path: Path) -> None:
    up = Proc(
        [BUILDIT, "up", "--http-port", "0", "--grpc-port", "0", "--executor", "local"],
        clean_env(tmp_path),
        tmp_path,
    )
    try:
        wait_for(lambda: "embedded agent:" in up.output, 60, "the banner")
        record = tmp_path / ".buildit" / address.ADDRESS_FILE
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        url = json.loads(record.read_text())["url"]
        assert url in up.output and url != address.DEFAULT_SERVER
        nested = tmp_path / "src" / "deep"
        nested.mkdir(parents=True)
        env = clean_env(tmp_path, BUILDIT_HTTP_PORT=str(free_port()))  # the record beats this default
        # `buildit login` finds it too, and keeps its key for that address: the other verbs use it.
        login = cli(nested, env, "login", "--password-stdin", stdin=admin_password(tmp_path / ".buildit"))
        assert login.returncode == 0, login.stderr
        assert f"signed in to {url} as admin" in login.stdout
        stored = json.loads((tmp_path / "config" / "buildit" / "credentials.json").read_text())
        assert list(stored) == [url]
        listed = cli(nested, env, "repo", "list")
        assert listed.returncode == 0, listed.stderr
        assert "no repositories" in listed.stdout
        # BUILDIT_URL comes before the record, and --server before BUILDIT_URL.
        dead = f"http://127.0.0.1:{free_port()}"
        by_env = cli(nested, {**env, "BUILDIT_URL": dead}, "repo", "list")
        assert by_env.returncode == 1
        assert f"no controller at {dead} (from BUILDIT_URL): connection refused" in by_env.stderr
        by_flag = cli(nested, {**env, "BUILDIT_URL": dead}, "repo", "list", "--server", url)
        assert by_flag.returncode == 0, by_flag.stderr
        up.signal(signal.SIGTERM)
        assert up.wait(60) == 0, up.output
        assert not record.exists()  # a clean stop takes its address back
        gone = cli(nested, env, "repo", "list")
        assert gone.returncode == 1
        port = env["BUILDIT_HTTP_PORT"]
        assert f"no controller at http://127.0.0.1:{port} (the default with BUILDIT_HTTP_PORT={port}; " in (
            gone.stderr
        )
    finally:
        up.stop()


class HealthServer:
    """A loopback HTTP server answering GET /health with {"status": "ok"}, as a controller does."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"status": "ok"}' if self.path == "/health" else b"{}"
                self.send_response(200 if self.path == "/health" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory as the working directory, with no BUILDIT_* settings."""
    for name in list(os.environ):
        if name.startswith("BUILDIT_"):
            monkeypatch.delenv(name)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "work"


def write_record(data_dir: Path, url: str, pid: int) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / address.ADDRESS_FILE
    path.write_text(json.dumps({"url": url, "pid": pid}))
    return path


def test_the_order_is_flag_then_env_then_record_then_default(
    project: Path, health: HealthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = address.resolve(None)
    assert (default, default.origin) == (
        address.DEFAULT_SERVER,
        "the default; set --server or BUILDIT_URL, or start one with buildit up",
    )
    assert address.describe_unreachable(default, ConnectionRefusedError(111, "Connection refused")) == (
        "no controller at http://127.0.0.1:8080 (the default; set --server or BUILDIT_URL, "
        "or start one with buildit up): connection refused"
    )
    write_record(project / ".buildit", health.url, os.getpid())
    recorded = address.resolve(None)
    assert recorded == health.url and recorded.origin.startswith("recorded by a running controller in")
    monkeypatch.setenv("BUILDIT_URL", "http://127.0.0.1:1/")
    assert (address.resolve(None), address.resolve(None).origin) == ("http://127.0.0.1:1", "from BUILDIT_URL")
    flag = address.resolve("https://ci.example.test")
    assert (flag, flag.origin) == ("https://ci.example.test", "from --server")
    with pytest.raises(UsageError, match=re.escape("--server 'ci.example.test': expected the controller's")):
        address.resolve("ci.example.test")
    monkeypatch.setenv("BUILDIT_URL", "localhost:8080")
    with pytest.raises(UsageError, match="BUILDIT_URL 'localhost:8080'"):
        address.resolve(None)


def test_a_record_is_found_from_subdirectories_or_through_buildit_data_dir(
    project: Path, health: HealthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(project / ".buildit", health.url, os.getpid())
    (project / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(project / "a" / "b")
    assert address.resolve(None) == health.url
    elsewhere = project.parent / "elsewhere"
    monkeypatch.setenv("BUILDIT_DATA_DIR", str(elsewhere))  # only that data dir is looked at
    assert address.resolve(None) == address.DEFAULT_SERVER
    write_record(elsewhere, health.url, os.getpid())
    assert address.resolve(None) == health.url


def test_a_stale_record_is_passed_over_and_said_so(project: Path, health: HealthServer) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = write_record(project / ".buildit", health.url, dead.pid)
    chosen = address.resolve(None)
    assert chosen == address.DEFAULT_SERVER
    assert f"passed over .buildit/controller.json names {health.url}, whose process {dead.pid} is gone" in (
        chosen.origin
    )
    silent = f"http://127.0.0.1:{free_port()}"
    record.write_text(json.dumps({"url": silent, "pid": os.getpid()}))
    chosen = address.resolve(None)
    assert chosen == address.DEFAULT_SERVER and f"names {silent}, which does not answer" in chosen.origin
    record.write_text("not json")
    assert address.resolve(None) == address.DEFAULT_SERVER


def test_record_writes_a_private_file_and_forget_removes_only_its_own(tmp_path: Path) -> None:
    path = address.record(tmp_path, "0.0.0.0", 18123, 19090)
    assert path == tmp_path / address.ADDRESS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    body = json.loads(path.read_text())
    assert (body["url"], body["grpc_port"], body["pid"]) == ("http://127.0.0.1:18123", 19090, os.getpid())
    body["pid"] = os.getpid() + 1  # another controller's record (one wrote after us): left alone
    path.write_text(json.dumps(body))
    address.forget(path)
    assert path.exists()
    address.record(tmp_path, "127.0.0.1", 18124, 19091)
    address.forget(path)
    assert not path.exists()
    address.forget(path)  # idempotent
    assert address.record(tmp_path / "missing" / "dir", "127.0.0.1", 1, 2) is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123"),
        ("0.0.0.0", "http://127.0.0.1:8123"),
        ("::", "http://[::1]:8123"),
        ("::1", "http://[::1]:8123"),
        ("192.0.2.7", "http://192.0.2.7:8123"),
    ],
)
def test_local_url_reaches_the_bound_address_from_this_machine(host: str, url: str) -> None:
    assert address.local_url(host, 8123) == url
