"""Webhook authentication: is this delivery from the forge that knows the repository's secret?

- GitHub signs the raw body with HMAC-SHA256 keyed by the webhook secret and sends
  `X-Hub-Signature-256: sha256=<hex digest>`.
- Gitea (and Forgejo) send the same HMAC as bare hex in `X-Gitea-Signature`; recent versions
  also send the GitHub-style `X-Hub-Signature-256: sha256=<hex>`, accepted here too.
- GitLab sends the secret itself in `X-Gitlab-Token`.
- The generic hook (`/hooks/git/{repo_id}`) takes `Authorization: Bearer <secret>`.

Every check is constant-time (`hmac.compare_digest`) and answers False, never raises, for a
missing or empty header, an empty secret or a malformed signature: the caller answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_GITHUB_PREFIX = "sha256="


def _hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def _hex_matches(secret: str, body: bytes, hex_signature: str) -> bool:
    """Compare a hex HMAC-SHA256 to the one computed over `body` (malformed hex -> False)."""
    if not _HEX_SHA256.fullmatch(hex_signature):
        return False
    return hmac.compare_digest(_hmac_sha256(secret, body), bytes.fromhex(hex_signature))


def _secret_equals(secret: str, presented: str) -> bool:
    return hmac.compare_digest(secret.encode("utf-8"), presented.encode("utf-8"))


def verify_github(secret: str, body: bytes, signature_header: str | None) -> bool:
    """Check `X-Hub-Signature-256` so only GitHub (holding the secret) can trigger builds.

    The header is `sha256=` followed by the hex HMAC-SHA256 of the exact bytes received: the
    caller must pass the raw body, not re-serialised JSON.
    """
    if not secret or not signature_header:
        return False
    header = signature_header.strip()
    if header[: len(_GITHUB_PREFIX)].lower() != _GITHUB_PREFIX:
        return False
    return _hex_matches(secret, body, header[len(_GITHUB_PREFIX) :])


def verify_gitea(secret: str, body: bytes, signature_header: str | None) -> bool:
    """Check a Gitea/Forgejo signature so only the forge holding the secret can trigger builds.

    Accepts `X-Gitea-Signature` (bare hex HMAC-SHA256 of the raw body) and, because newer Gitea
    versions also send it, the GitHub-style `sha256=<hex>` value of `X-Hub-Signature-256`.
    """
    if not secret or not signature_header:
        return False
    header = signature_header.strip()
    if header[: len(_GITHUB_PREFIX)].lower() == _GITHUB_PREFIX:
        header = header[len(_GITHUB_PREFIX) :]
    return _hex_matches(secret, body, header)


def verify_gitlab(secret: str, token_header: str | None) -> bool:
    """Check `X-Gitlab-Token`: GitLab signs nothing, it sends the configured secret verbatim."""
    if not secret or not token_header:
        return False
    return _secret_equals(secret, token_header)


def verify_bearer(secret: str, authorization_header: str | None) -> bool:
    """Check `Authorization: Bearer <secret>` for the generic hook any Git server or script can call.

    The scheme name is case-insensitive (RFC 9110); the token must equal the secret exactly.
    """
    if not secret or not authorization_header:
        return False
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    token = token.strip()
    if not token:
        return False
    return _secret_equals(secret, token)
