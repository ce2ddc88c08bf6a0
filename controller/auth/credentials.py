"""Random credentials (API keys, registration tokens, session ids) and how they are stored.

A credential is `<kind>_<prefix>_<secret>`: the prefix (8 characters) is stored in clear so people
can recognise a key in a list; the whole value is stored only as its SHA-256 (it carries 256 bits
of randomness, so a slow hash would add cost per request and no safety).
"""

from __future__ import annotations

import hashlib
import secrets

API_KEY = "bk"
REGISTRATION_TOKEN = "bkr"
PREFIX_CHARS = 8


def new_credential(kind: str) -> tuple[str, str]:
    """A fresh credential of `kind` and its visible prefix: (`bk_Ab12Cd34_…`, `Ab12Cd34`)."""
    prefix = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")[:PREFIX_CHARS]
    return f"{kind}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def digest(value: str) -> str:
    """How a credential is stored and looked up."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_session_id() -> str:
    """A session cookie value (256 bits)."""
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    """A per-session CSRF token for forms and htmx requests."""
    return secrets.token_urlsafe(24)
