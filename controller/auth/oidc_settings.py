"""OIDC login settings, read from BUILDIT_OIDC_* environment variables.

Kept apart from `controller.auth.oidc` so that the controller's settings and the login page (which
only needs to know whether to show the SSO button and its label) can read them without importing the
OAuth/JOSE libraries. Pure: no I/O beyond reading the mapping it is given.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Every variable this module reads; a set one without BUILDIT_OIDC_ISSUER is a configuration mistake.
VARIABLES = (
    "BUILDIT_OIDC_ISSUER",
    "BUILDIT_OIDC_CLIENT_ID",
    "BUILDIT_OIDC_CLIENT_SECRET",
    "BUILDIT_OIDC_SCOPES",
    "BUILDIT_OIDC_GROUPS_CLAIM",
    "BUILDIT_OIDC_USERNAME_CLAIM",
    "BUILDIT_OIDC_LABEL",
)

DEFAULT_SCOPES = ("openid", "email", "profile")
DEFAULT_USERNAME_CLAIM = "preferred_username"
DEFAULT_LABEL = "Sign in with SSO"

# A claim name is a JSON object key; we only refuse what cannot be meant (blanks, control characters),
# so namespaced claims such as "https://example.com/groups" (Auth0) stay usable.
_CLAIM_RE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_LABEL_MAX = 80


@dataclass(frozen=True)
class OidcSettings:
    """How BuildIt talks to one OpenID provider. `client_secret` is kept out of repr on purpose."""

    issuer: str
    client_id: str
    #: None for a public client: the code exchange is then protected by PKCE alone.
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    #: The ID-token (or userinfo) claim holding group names; None = do not read groups.
    groups_claim: str | None = None
    username_claim: str = DEFAULT_USERNAME_CLAIM
    #: Text of the login page's SSO button.
    label: str = DEFAULT_LABEL

    def __post_init__(self) -> None:
        _check_issuer(self.issuer)
        if not self.client_id or self.client_id != self.client_id.strip():
            raise ValueError("BUILDIT_OIDC_CLIENT_ID must be the client id registered at the provider")
        if self.client_secret is not None and not self.client_secret:
            # An empty secret would be sent as one; say so rather than fail at the provider.
            raise ValueError("BUILDIT_OIDC_CLIENT_SECRET is empty: unset it for a public client")
        if "openid" not in self.scopes:
            raise ValueError(
                f"BUILDIT_OIDC_SCOPES must include 'openid' (got {' '.join(self.scopes)!r}); "
                "without it the provider issues no ID token"
            )
        bad = [s for s in self.scopes if not _SCOPE_RE.match(s)]
        if bad:
            raise ValueError(f"BUILDIT_OIDC_SCOPES has an invalid scope {bad[0]!r}")
        if self.groups_claim is not None and not _CLAIM_RE.match(self.groups_claim):
            raise ValueError(f"BUILDIT_OIDC_GROUPS_CLAIM is not a claim name: {self.groups_claim!r}")
        if not _CLAIM_RE.match(self.username_claim):
            raise ValueError(f"BUILDIT_OIDC_USERNAME_CLAIM is not a claim name: {self.username_claim!r}")
        if not self.label.strip() or len(self.label) > _LABEL_MAX:
            raise ValueError(f"BUILDIT_OIDC_LABEL must be 1 to {_LABEL_MAX} characters of button text")

    @property
    def is_public_client(self) -> bool:
        """True when no client secret is configured (PKCE-only client, token auth method `none`)."""
        return self.client_secret is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcSettings | None:
        """The settings from BUILDIT_OIDC_* (os.environ by default); None when OIDC login is off.

        An empty variable counts as unset, since Helm values and compose files often render unset
        values as "". Raises ValueError naming the variable when the combination is unusable.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        issuer = get("BUILDIT_OIDC_ISSUER")
        if issuer is None:
            stray = [name for name in VARIABLES[1:] if get(name) is not None]
            if stray:
                raise ValueError(
                    f"{stray[0]} is set but BUILDIT_OIDC_ISSUER is not: set the issuer to enable "
                    "OIDC login, or unset the BUILDIT_OIDC_* variables"
                )
            return None
        client_id = get("BUILDIT_OIDC_CLIENT_ID")
        if client_id is None:
            raise ValueError(
                "BUILDIT_OIDC_CLIENT_ID is required when BUILDIT_OIDC_ISSUER is set: "
                "register BuildIt as a client at the provider and set its client id"
            )
        # The secret is taken verbatim (not stripped) apart from the emptiness test: it is opaque.
        raw_secret = env.get("BUILDIT_OIDC_CLIENT_SECRET")
        secret = raw_secret if raw_secret is not None and raw_secret.strip() else None
        scopes_text = get("BUILDIT_OIDC_SCOPES")
        scopes = tuple(dict.fromkeys(scopes_text.split())) if scopes_text else DEFAULT_SCOPES
        label = env.get("BUILDIT_OIDC_LABEL")
        return cls(
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            scopes=scopes,
            groups_claim=get("BUILDIT_OIDC_GROUPS_CLAIM"),
            username_claim=get("BUILDIT_OIDC_USERNAME_CLAIM") or DEFAULT_USERNAME_CLAIM,
            label=label.strip() if label and label.strip() else DEFAULT_LABEL,
        )


def _check_issuer(issuer: str) -> None:
    """The issuer is an https URL (http only on loopback, for development), no query or fragment.

    Plain http to a remote provider would let anyone on the path swap the discovery document and
    the signing keys, so it is refused rather than warned about.
    """
    try:
        parts = urlsplit(issuer)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not host:
        raise ValueError(
            f"BUILDIT_OIDC_ISSUER must be the provider's issuer URL, such as "
            f"https://login.example.com/realms/ci, got {issuer!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"BUILDIT_OIDC_ISSUER must not have a query or fragment, got {issuer!r}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"BUILDIT_OIDC_ISSUER must use https (http is allowed only on loopback), got {issuer!r}"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
