"""Incoming forge webhooks: who sent a delivery (`verify`) and what a push says (`payloads`).

Pure functions over headers and raw bytes, no web framework: the HTTP handlers call these.
"""

from __future__ import annotations

from controller.hooks.payloads import PayloadError, PushEvent, parse_push, same_repository
from controller.hooks.verify import verify_bearer, verify_gitea, verify_github, verify_gitlab

__all__ = [
    "PayloadError",
    "PushEvent",
    "parse_push",
    "same_repository",
    "verify_bearer",
    "verify_gitea",
    "verify_github",
    "verify_gitlab",
]
