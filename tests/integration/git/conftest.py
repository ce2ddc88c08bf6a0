"""Real Git repositories made with the git CLI, and a loopback smart-HTTP server for mirrors.

The server is a plain threaded `http.server` bound to 127.0.0.1 on an OS-chosen port that calls
controller.git.smart_http directly (no web framework), and records each request it answers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.git.mirror import GitError
from controller.git.smart_http import advertisement, upload_pack

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Ada Tester",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada Tester",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "HOME": "/nonexistent",  # no user config (credential helpers, url rewrites) leaks into tests
}


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the git CLI in `cwd` with a fixed identity and no user configuration."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def commit(repo: Path, name: str = "file.txt", content: str | None = None, message: str | None = None) -> str:
    """Write `name` (a unique content by default), commit it, and return the new HEAD sha."""
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(git(repo, "rev-list", "--all").stdout.split())
    path.write_text(content if content is not None else f"version {count}\n")
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message or f"commit {count}")
    return head(repo)


def head(repo: Path, rev: str = "HEAD") -> str:
    """The sha `rev` resolves to in `repo`."""
    return git(repo, "rev-parse", rev).stdout.strip()


def init_repo(path: Path) -> Path:
    """A new working copy on branch main with one commit."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit(path, ".buildit.kdl", 'pipeline "demo"\n', message="first")
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working copy with one commit on main."""
    return init_repo(tmp_path / "work")


@dataclass
class GitHttpServer:
    """A loopback smart-HTTP server: `repos` maps the first URL segment ("x.git") to a mirror path."""

    url: str
    repos: dict[str, Path]
    requests: list[tuple[str, str]] = field(default_factory=list)
    pack_object_counts: list[int] = field(default_factory=list)  # per upload-pack response with a pack
    reject_auth: bool = False  # answer everything with 401, as for wrong or missing credentials


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients drop keep-alive connections when they exit: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _serve(server: ThreadingHTTPServer) -> None:
    server.serve_forever(poll_interval=0.05)


@pytest.fixture
def http_server() -> Iterator[GitHttpServer]:
    """Serve mirrors over smart HTTP on 127.0.0.1:<random port> for the test's duration."""
    state = GitHttpServer(url="", repos={})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(
            self, status: int, content_type: str, body: bytes, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _repo(self) -> Path | None:
            if state.reject_auth:
                self._send(401, "text/plain", b"auth required\n", {"WWW-Authenticate": 'Basic realm="git"'})
                return None
            name = urlsplit(self.path).path.strip("/").split("/", 1)[0]
            repo = state.repos.get(name)
            if repo is None:
                self._send(404, "text/plain", b"no such repository\n")
            return repo

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            repo = self._repo()
            if repo is None:
                return
            parts = urlsplit(self.path)
            if not parts.path.endswith("/info/refs"):
                self._send(404, "text/plain", b"dumb protocol not served\n")
                return
            service = parse_qs(parts.query).get("service", [""])[0]
            try:
                content_type, body = advertisement(repo, service)
            except GitError as exc:
                self._send(403, "text/plain", f"{exc}\n".encode())
                return
            self._send(200, content_type, body)

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path))
            repo = self._repo()
            if repo is None:
                return
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunk = self.rfile.read(size)
                    self.rfile.readline()
                    if size == 0:
                        break
                    chunks.append(chunk)
                body = b"".join(chunks)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                content_type, data = upload_pack(repo, body, self.headers.get("Content-Encoding"))
            except GitError as exc:
                self._send(403, "text/plain", f"{exc}\n".encode())
                return
            start = data.find(b"PACK\x00\x00\x00\x02")
            if start >= 0:  # side-band-64k: the pack header sits whole in the first data packet
                state.pack_object_counts.append(int.from_bytes(data[start + 8 : start + 12], "big"))
            self._send(200, content_type, data)

    server = _QuietServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=_serve, args=(server,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def redirecting_server(target: str) -> Iterator[tuple[str, list[str]]]:
    """A loopback server answering every request with 301 to `target` + the path asked for: its
    URL and the paths it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _moved(self) -> None:
            asked.append(self.path)
            self.send_response(301)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = _moved
        do_POST = _moved

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=_serve, args=(server,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
