"""Webhook authentication: GitHub/Gitea HMAC signatures, the GitLab token, the generic bearer token."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from controller.hooks.verify import verify_bearer, verify_gitea, verify_github, verify_gitlab

SECRET = "s3cr3t-webhook-key-0123456789"
# A trimmed GitHub push body, as raw bytes: signatures cover the exact bytes received.
BODY = json.dumps(
    {
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "repository": {
            "full_name": "octo-org/octo-repo",
            "clone_url": "https://github.com/octo-org/octo-repo.git",
        },
    },
    indent=2,
).encode()


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- GitHub: X-Hub-Signature-256: sha256=<hex> ----------------------------------------------------


def test_github_documented_example() -> None:
    # The test values GitHub's "Validating webhook deliveries" page gives for checking an implementation.
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify_github("It's a Secret to Everybody", b"Hello, World!", signature)


def test_github_good_signature() -> None:
    assert verify_github(SECRET, BODY, f"sha256={hex_hmac(SECRET, BODY)}")


def test_github_accepts_uppercase_hex_and_surrounding_space() -> None:
    assert verify_github(SECRET, BODY, f" sha256={hex_hmac(SECRET, BODY).upper()} ")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "sha256=",
        "sha256=not-hex-at-all",
        "sha256=abc",  # too short
        "sha256=" + "0" * 64,
        "sha1=" + hashlib.sha1(BODY).hexdigest(),  # the legacy header's format is not accepted here
        "sha256=zz" + "0" * 62,
        "sha256=é" + "0" * 63,  # non-ASCII
    ],
)
def test_github_bad_or_missing_signature(header: str | None) -> None:
    assert verify_github(SECRET, BODY, header) is False


def test_github_requires_the_prefix() -> None:
    assert verify_github(SECRET, BODY, hex_hmac(SECRET, BODY)) is False


def test_github_wrong_secret() -> None:
    assert verify_github(SECRET, BODY, f"sha256={hex_hmac('another-secret', BODY)}") is False


def test_github_tampered_body() -> None:
    signature = f"sha256={hex_hmac(SECRET, BODY)}"
    tampered = BODY.replace(b"refs/heads/main", b"refs/heads/evil")
    assert verify_github(SECRET, tampered, signature) is False
    # Re-serialising the JSON changes the bytes, so the signature no longer holds: use the raw body.
    assert verify_github(SECRET, json.dumps(json.loads(BODY)).encode(), signature) is False


def test_github_empty_secret_never_verifies() -> None:
    assert verify_github("", BODY, f"sha256={hex_hmac('', BODY)}") is False


# --- Gitea: X-Gitea-Signature: <hex>, or X-Hub-Signature-256 style ----------------------------------


def test_gitea_bare_hex() -> None:
    assert verify_gitea(SECRET, BODY, hex_hmac(SECRET, BODY))


def test_gitea_accepts_hub_signature_style() -> None:
    assert verify_gitea(SECRET, BODY, f"sha256={hex_hmac(SECRET, BODY)}")


@pytest.mark.parametrize("header", [None, "", "sha256=", "xyz", "0" * 64, "sha1=" + "0" * 64])
def test_gitea_bad_or_missing_signature(header: str | None) -> None:
    assert verify_gitea(SECRET, BODY, header) is False


def test_gitea_wrong_secret_and_tampered_body() -> None:
    assert verify_gitea(SECRET, BODY, hex_hmac("wrong", BODY)) is False
    assert verify_gitea(SECRET, BODY + b" ", hex_hmac(SECRET, BODY)) is False


def test_gitea_empty_secret_never_verifies() -> None:
    assert verify_gitea("", BODY, hex_hmac("", BODY)) is False


# --- GitLab: X-Gitlab-Token is the secret itself ------------------------------------------------------


def test_gitlab_token() -> None:
    assert verify_gitlab(SECRET, SECRET)


@pytest.mark.parametrize("header", [None, "", SECRET + "x", SECRET[:-1], SECRET.upper(), "é"])
def test_gitlab_wrong_or_missing_token(header: str | None) -> None:
    assert verify_gitlab(SECRET, header) is False


def test_gitlab_empty_secret_never_verifies() -> None:
    assert verify_gitlab("", "") is False


# --- Generic hook: Authorization: Bearer <secret> -----------------------------------------------------


@pytest.mark.parametrize("header", [f"Bearer {SECRET}", f"bearer {SECRET}", f"  BEARER   {SECRET} "])
def test_bearer_good(header: str) -> None:
    assert verify_bearer(SECRET, header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        SECRET,
        f"Basic {SECRET}",
        f"Bearer {SECRET}x",
        "Bearer wrong",
        f"Token {SECRET}",
    ],
)
def test_bearer_bad_or_missing(header: str | None) -> None:
    assert verify_bearer(SECRET, header) is False


def test_bearer_empty_secret_never_verifies() -> None:
    assert verify_bearer("", "Bearer ") is False
    assert verify_bearer("", "Bearer x") is False
