"""A real Git smart-HTTP server for the agent's fetch tests: `git http-backend` behind http.server.

Serves the bare repositories under `root` at `http://127.0.0.1:PORT/<name>.git` the way the controller
serves its mirrors: every request must carry `Authorization: Bearer <token>` (anything else gets 401).
Each request runs git's own CGI program with the standard CGI variables. With `protocol_v2` the
client's `Git-Protocol` header is passed on (git then speaks v2, which lets a client fetch any commit
by id); without it the server speaks v0, which refuses commits no ref points at.

While a request is served the handler also looks at every process's argv for the token: the agent
must never put it there (`token_in_argv` records any sighting).

`Upstream` and `git` make the repositories to serve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class GitHttpServer:
    """Start with `start()`, stop with `stop()`; `url(name)` is a repository's clone URL."""

    def __init__(self, root: Path, accept: Callable[[str], bool], *, protocol_v2: bool = True) -> None:
        self.root = root
        self.accept = accept
        self.protocol_v2 = protocol_v2
        #: (method, path with query) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        #: Tokens found in some process's argv while serving (must stay empty).
        self.token_in_argv: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitHttpServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def upload_pack_requests(self) -> int:
        """How many fetch negotiations (POST git-upload-pack) the server answered."""
        return sum(1 for method, path in self.requests if method == "POST" and "git-upload-pack" in path)

    # --- serving

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        self.requests.append((request.command, request.path))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if token:
            self._look_for_token_in_argv(token)
        if not token or not self.accept(token):
            body = b"unauthorized\n"
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Bearer realm="buildit"')
            request.send_header("Content-Type", "text/plain")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
            return
        body = self._read_body(request)
        parts = urlsplit(request.path)
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "agent",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
        }
        encoding = request.headers.get("Content-Encoding")
        if encoding:
            env["HTTP_CONTENT_ENCODING"] = encoding
        protocol = request.headers.get("Git-Protocol")
        if protocol and self.protocol_v2:
            env["GIT_PROTOCOL"] = protocol
        git = shutil.which("git")
        assert git is not None
        result = subprocess.run([git, "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _ and b"\n\n" in result.stdout:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    @staticmethod
    def _read_body(request: BaseHTTPRequestHandler) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(request.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    request.rfile.readline()
                    return bytes(data)
                data += request.rfile.read(size)
                request.rfile.readline()
        length = int(request.headers.get("Content-Length") or 0)
        return request.rfile.read(length) if length else b""

    def _look_for_token_in_argv(self, token: str) -> None:
        needle = token.encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in argv:
                self.token_in_argv.append(argv.replace(b"\0", b" ").decode("utf-8", "replace"))


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity and no user config; its stdout, stripped."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Upstream:
    """A working repository and the bare repository the server serves (`project.git`)."""

    work: Path
    bare: Path

    def commit(self, name: str, text: str) -> str:
        (self.work / name).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", f"change {name}")
        git(self.work, "push", "-q", str(self.bare), "HEAD:refs/heads/main")
        return git(self.work, "rev-parse", "HEAD")

    def pin(self, sha: str) -> None:
        git(self.bare, "update-ref", f"refs/buildit/pins/{sha}", sha)
