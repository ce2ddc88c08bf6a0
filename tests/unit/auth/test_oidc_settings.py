"""BUILDIT_OIDC_* parsing: defaults, refusals that name the variable, and a secret kept out of sight."""

from __future__ import annotations

import pytest

from controller.auth.oidc_settings import OidcSettings

ISSUER = "https://login.example.com/realms/ci"


def env(**values: str) -> dict[str, str]:
    return {f"BUILDIT_OIDC_{k.upper()}": v for k, v in values.items()}


def test_off_when_no_issuer() -> None:
    assert OidcSettings.from_env({}) is None
    assert OidcSettings.from_env(env(issuer="  ")) is None  # empty counts as unset (Helm, compose)


def test_defaults() -> None:
    settings = OidcSettings.from_env(env(issuer=ISSUER, client_id="buildit"))
    assert settings == OidcSettings(issuer=ISSUER, client_id="buildit")
    assert settings.client_secret is None and settings.is_public_client
    assert settings.scopes == ("openid", "email", "profile")
    assert settings.groups_claim is None
    assert settings.username_claim == "preferred_username"
    assert settings.label == "Sign in with SSO"


def test_every_variable() -> None:
    settings = OidcSettings.from_env(
        env(
            issuer=ISSUER,
            client_id="buildit",
            client_secret="s3cr3t ",
            scopes="openid  email groups openid",
            groups_claim="groups",
            username_claim="email",
            label=" Sign in with Keycloak ",
        )
    )
    assert settings is not None
    assert settings.client_secret == "s3cr3t "  # opaque: taken verbatim
    assert not settings.is_public_client
    assert settings.scopes == ("openid", "email", "groups")
    assert (settings.groups_claim, settings.username_claim) == ("groups", "email")
    assert settings.label == "Sign in with Keycloak"


def test_loopback_http_issuer_is_allowed_for_development() -> None:
    for issuer in ("http://127.0.0.1:8081", "http://localhost:8081/realms/dev", "http://[::1]:9000"):
        assert OidcSettings.from_env(env(issuer=issuer, client_id="c")) is not None


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (env(client_id="buildit"), "BUILDIT_OIDC_CLIENT_ID is set but BUILDIT_OIDC_ISSUER is not"),
        (env(client_secret="x"), "BUILDIT_OIDC_CLIENT_SECRET is set but BUILDIT_OIDC_ISSUER is not"),
        (env(groups_claim="groups"), "BUILDIT_OIDC_GROUPS_CLAIM is set but BUILDIT_OIDC_ISSUER"),
        (env(issuer=ISSUER), "BUILDIT_OIDC_CLIENT_ID is required"),
        (
            env(issuer="login.example.com", client_id="c"),
            "BUILDIT_OIDC_ISSUER must be the provider's issuer URL",
        ),
        (env(issuer="ftp://login.example.com", client_id="c"), "BUILDIT_OIDC_ISSUER must be"),
        (env(issuer="http://login.example.com", client_id="c"), "BUILDIT_OIDC_ISSUER must use https"),
        (env(issuer=ISSUER + "?x=1", client_id="c"), "BUILDIT_OIDC_ISSUER must not have a query"),
        (
            env(issuer=ISSUER, client_id="c", scopes="email profile"),
            "BUILDIT_OIDC_SCOPES must include 'openid'",
        ),
        (env(issuer=ISSUER, client_id="c", scopes='openid "x"'), "BUILDIT_OIDC_SCOPES has an invalid scope"),
        (env(issuer=ISSUER, client_id="c", groups_claim="my groups"), "BUILDIT_OIDC_GROUPS_CLAIM is not"),
        (env(issuer=ISSUER, client_id="c", username_claim="a\tb"), "BUILDIT_OIDC_USERNAME_CLAIM is not"),
        (env(issuer=ISSUER, client_id="c", label="x" * 81), "BUILDIT_OIDC_LABEL must be"),
    ],
)
def test_unusable_combinations_name_the_variable(variables: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError) as refused:
        OidcSettings.from_env(variables)
    assert named in str(refused.value)


def test_namespaced_claims_are_allowed() -> None:
    settings = OidcSettings.from_env(
        env(issuer=ISSUER, client_id="c", groups_claim="https://ci.example/groups")
    )
    assert settings is not None and settings.groups_claim == "https://ci.example/groups"


def test_secret_never_shown() -> None:
    secret = "very-secret-value"
    settings = OidcSettings.from_env(env(issuer=ISSUER, client_id="buildit", client_secret=secret))
    assert secret not in repr(settings) and secret not in str(settings)
    # Refusals do not quote it either.
    with pytest.raises(ValueError) as refused:
        OidcSettings.from_env(env(issuer=ISSUER, client_id="c", client_secret=secret, scopes="email"))
    assert secret not in str(refused.value)
    with pytest.raises(ValueError) as refused:
        OidcSettings.from_env(env(client_secret=secret))
    assert secret not in str(refused.value)
