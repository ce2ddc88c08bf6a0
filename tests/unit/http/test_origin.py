"""controller.http.origin: which Origin may act for a request sent to which Host."""

from __future__ import annotations

import pytest

from controller.http.origin import origin_of, same_origin


@pytest.mark.parametrize(
    ("origin", "host", "public_url"),
    [
        (None, "127.0.0.1:8080", ""),  # not a browser acting for a page
        ("http://127.0.0.1:8080", "127.0.0.1:8080", ""),
        ("http://LOCALHOST:8080", "localhost:8080", ""),
        ("http://ci.example", "ci.example", ""),  # default port on both sides
        ("http://ci.example:80", "ci.example", ""),
        ("https://ci.example", "ci.example", ""),  # TLS ends at a proxy that keeps the Host
        ("https://ci.example", "127.0.0.1:8080", "https://ci.example/"),  # the public URL
        ("https://ci.example:443", "10.0.0.5:8080", "https://ci.example"),
        ("http://[::1]:8080", "[::1]:8080", ""),
    ],
)
def test_same_origin(origin: str | None, host: str, public_url: str) -> None:
    assert same_origin(origin, host, public_url)


@pytest.mark.parametrize(
    ("origin", "host", "public_url"),
    [
        ("http://evil.example", "127.0.0.1:8080", ""),
        ("http://127.0.0.1:9999", "127.0.0.1:8080", ""),  # another port is another origin
        ("http://localhost:8080", "127.0.0.1:8080", ""),  # another name too
        ("null", "127.0.0.1:8080", ""),  # sandboxed frames, file: pages
        ("", "127.0.0.1:8080", ""),
        ("file://", "127.0.0.1:8080", ""),
        ("http://ci.example:8443", "ci.example", ""),  # no port in Host means the default port
        ("http://evil.example", None, ""),
        ("http://evil.example", "", "https://ci.example"),
        ("https://ci.example.evil", "127.0.0.1:8080", "https://ci.example"),
        ("http://ci.example", "127.0.0.1:8080", "https://ci.example"),  # scheme counts
        ("http://x:notaport", "x:1", ""),
    ],
)
def test_other_origins(origin: str, host: str | None, public_url: str) -> None:
    assert not same_origin(origin, host, public_url)


def test_origin_of_defaults_the_port_by_scheme() -> None:
    assert origin_of("https://CI.example/path?q") == ("https", "ci.example", 443)
    assert origin_of("ws://a:1") == ("ws", "a", 1)
    assert origin_of("ftp://a") is None
