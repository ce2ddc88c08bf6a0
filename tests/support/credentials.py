"""Signing test clients in as a real user would: the first admin's password from the data dir is
exchanged for an API key (POST /api/v1/auth/token), which REST requests send as a Bearer token and
gRPC calls as `authorization` metadata."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import grpc

PASSWORD_FILE = "initial-admin-password"


def admin_password(data_dir: Path) -> str:
    """The generated password of user `admin` (written at the controller's first start)."""
    return (data_dir / PASSWORD_FILE).read_text().strip()


def issue_key(base_url: str, username: str, password: str, name: str = "tests") -> str:
    """A personal API key for `username`, the way `buildit login` gets one."""
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/auth/token",
        data=json.dumps({"name": name}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["key"])


def admin_key(base_url: str, data_dir: Path) -> str:
    """An API key of the first admin (owner of the default organization)."""
    return issue_key(base_url, "admin", admin_password(data_dir))


class _KeyInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <key>` (and a tenant) to every call of a channel."""

    def __init__(self, key: str, tenant: str | None = None) -> None:
        self.metadata = [("authorization", f"Bearer {key}")]
        if tenant:
            self.metadata.append(("x-buildit-tenant", tenant))

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or []) + self.metadata
        return (
            details._replace(metadata=metadata)
            if hasattr(details, "_replace")
            else _Details(details, metadata)
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def keyed_channel(address: str, key: str, tenant: str | None = None) -> grpc.Channel:
    """An insecure loopback channel whose every call carries the API key."""
    return grpc.intercept_channel(grpc.insecure_channel(address), _KeyInterceptor(key, tenant))
