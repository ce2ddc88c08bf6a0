"""OidcClient's checks of what a provider sends, against an in-memory provider (httpx.MockTransport).

The flow against a real provider is in tests/integration/auth/test_oidc_flow.py; this file covers
what a well-behaved provider never sends, so only a provider we script can: `alg: none`, HS256
tokens, rotated and unknown keys, several audiences, expired tokens, userinfo for another subject,
endpoints over plain http, token-endpoint auth methods the provider does or does not list.
Tokens are signed here with joserfc, the way a provider signs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey

from controller.auth.oidc import OidcClient, OidcIdentity, OidcSettings, PendingLogin
from controller.errors import Unauthenticated

ISSUER = "https://idp.example"
CLIENT_ID = "buildit"
SECRET = "client-secret-that-must-never-leak"
ACCESS_TOKEN = "access-token-that-must-never-leak"
REDIRECT_URI = "https://ci.example/login/oidc/callback"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def rsa_keys() -> list[RSAKey]:
    return [RSAKey.generate_key(2048, parameters={"kid": f"k{i}", "use": "sig"}) for i in (1, 2)]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class FakeProvider:
    """A scriptable OpenID provider: discovery, JWKS, token and userinfo endpoints."""

    def __init__(self, key: Key, clock: Clock) -> None:
        self.clock = clock
        self.signing_key: Key = key
        self.published: list[Key] = [key]
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks",
            "userinfo_endpoint": f"{ISSUER}/userinfo",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }
        self.header: dict[str, Any] = {"alg": "RS256", "kid": key.kid}
        #: Claims of the next ID token over the defaults; a None value removes the claim.
        self.claims: dict[str, Any] = {}
        self.raw_id_token: str | None = None
        self.token_answer: httpx.Response | None = None
        self.userinfo: dict[str, Any] | None = {"sub": "alice"}
        self.nonce = ""
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.published]})
        if path == "/token":
            if self.token_answer is not None:
                return self.token_answer
            id_token = self.raw_id_token or self.sign()
            return httpx.Response(
                200, json={"access_token": ACCESS_TOKEN, "token_type": "Bearer", "id_token": id_token}
            )
        if path == "/userinfo" and self.userinfo is not None:
            return httpx.Response(200, json=self.userinfo)
        return httpx.Response(404)

    def sign(self) -> str:
        now = int(self.clock())
        claims = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
            "email": "alice@example.com",
            **self.claims,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(self.header, claims, self.signing_key, algorithms=[self.header["alg"]])

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def token_request(self) -> httpx.Request:
        return [r for r in self.requests if r.url.path == "/token"][-1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(rsa_keys: list[RSAKey], clock: Clock) -> FakeProvider:
    return FakeProvider(rsa_keys[0], clock)


MakeClient = Callable[..., OidcClient]


@pytest.fixture
async def make_client(provider: FakeProvider) -> AsyncIterator[MakeClient]:
    """Clients of `provider` with settings changed as given; their HTTP clients closed after."""
    made: list[httpx.AsyncClient] = []

    def make(**settings: Any) -> OidcClient:
        values: dict[str, Any] = {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": SECRET}
        values.update(settings)
        made.append(httpx.AsyncClient(transport=httpx.MockTransport(provider.handle)))
        return OidcClient(OidcSettings(**values), http=made[-1], clock=provider.clock)

    yield make
    for http in made:
        await http.aclose()


@pytest.fixture
def client(make_client: MakeClient) -> OidcClient:
    return make_client(groups_claim="groups")


async def login(oidc: OidcClient, provider: FakeProvider, **params: str) -> OidcIdentity:
    _, pending = await oidc.begin(REDIRECT_URI)
    provider.nonce = pending.nonce
    return await oidc.finish(pending, {"code": "the-code", "state": pending.state, **params})


async def refused(oidc: OidcClient, provider: FakeProvider, match: str, **params: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated, match=match) as error:
        await login(oidc, provider, **params)
    message = str(error.value)
    assert error.value.message.startswith("OIDC: ")
    for secret in (SECRET, ACCESS_TOKEN, "the-code", provider.nonce):
        assert not secret or secret not in message
    return error.value


# --- the happy path and what goes over the wire ---------------------------------------------------


async def test_token_request_carries_code_verifier_and_basic_auth(
    client: OidcClient, provider: FakeProvider
) -> None:
    url, pending = await client.begin(REDIRECT_URI)
    provider.nonce = pending.nonce
    provider.claims = {"groups": ["ops"], "preferred_username": "alice.w", "email_verified": "true"}
    identity = await client.finish(pending, {"code": "the-code", "state": pending.state, "iss": ISSUER})

    assert identity == OidcIdentity(
        issuer=ISSUER,
        subject="alice",
        email="alice@example.com",
        email_verified=True,  # the string "true" some providers send
        name=None,
        username="alice.w",
        groups=["ops"],
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["scope"] == "openid email profile" and query["client_id"] == CLIENT_ID
    request = provider.token_request()
    form = dict(parse_qsl(request.content.decode()))
    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pending.code_verifier,
    }
    digest = hashlib.sha256(pending.code_verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert "/userinfo" not in provider.paths()  # the ID token had everything


async def test_client_secret_post_when_the_provider_lists_only_that(
    provider: FakeProvider, make_client: MakeClient
) -> None:
    provider.discovery["token_endpoint_auth_methods_supported"] = ["client_secret_post", "private_key_jwt"]
    oidc = make_client()
    await login(oidc, provider)
    request = provider.token_request()
    form = dict(parse_qsl(request.content.decode()))
    assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, SECRET)
    assert "authorization" not in request.headers


async def test_public_client_sends_no_secret(provider: FakeProvider, make_client: MakeClient) -> None:
    oidc = make_client(client_secret=None)
    await login(oidc, provider)
    request = provider.token_request()
    form = dict(parse_qsl(request.content.decode()))
    assert form["client_id"] == CLIENT_ID and "client_secret" not in form
    assert "authorization" not in request.headers


async def test_unsupported_token_auth_method_is_explained(
    provider: FakeProvider, make_client: MakeClient
) -> None:
    provider.discovery["token_endpoint_auth_methods_supported"] = ["private_key_jwt"]
    await refused(make_client(), provider, "accepts only private_key_jwt; BuildIt authenticates with")


async def test_public_client_needs_s256(provider: FakeProvider, make_client: MakeClient) -> None:
    provider.discovery["code_challenge_methods_supported"] = ["plain"]
    await refused(make_client(client_secret=None), provider, "does not support PKCE with S256")


# --- signatures and keys ----------------------------------------------------------------------------


def unsigned(claims: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64(claims)}."


async def test_alg_none_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    claims = {"iss": ISSUER, "sub": "mallory", "aud": CLIENT_ID, "iat": NOW, "exp": NOW + 300}
    provider.raw_id_token = unsigned(claims)
    await refused(client, provider, "signed with alg 'none'; BuildIt accepts RS256, ES256")


async def test_hs256_is_refused_even_with_a_matching_kid(client: OidcClient, provider: FakeProvider) -> None:
    # The classic confusion: HMAC "signed" with public material, naming the RSA key's kid.
    public = provider.signing_key.as_dict(private=False)
    provider.signing_key = OctKey.import_key(str(public["n"]).encode()[:64])
    provider.header = {"alg": "HS256", "kid": "k1"}
    provider.discovery["id_token_signing_alg_values_supported"] = ["RS256", "HS256"]
    await refused(client, provider, "signed with alg 'HS256'; BuildIt accepts RS256 from this provider")


async def test_forged_signature_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    provider.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, other key
    provider.published = [RSAKey.import_key(provider.published[0].as_dict(private=False))]
    await refused(client, provider, "signature does not verify")


async def test_rotated_key_is_fetched_once(
    client: OidcClient, provider: FakeProvider, rsa_keys: list[RSAKey]
) -> None:
    await login(client, provider)
    assert provider.paths().count("/jwks") == 1
    await login(client, provider)
    assert provider.paths().count("/jwks") == 1  # cached

    provider.signing_key, provider.published = rsa_keys[1], [rsa_keys[1]]
    provider.header = {"alg": "RS256", "kid": "k2"}
    assert (await login(client, provider)).subject == "alice"
    assert provider.paths().count("/jwks") == 2

    provider.header = {"alg": "RS256", "kid": "k9"}
    await refused(client, provider, "has no RSA key with kid 'k9'")
    assert provider.paths().count("/jwks") == 3  # one refetch per unknown kid, not a loop


async def test_ec_signed_tokens_verify(provider: FakeProvider, make_client: MakeClient) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "ec1"})
    provider.signing_key, provider.published = key, [key]
    provider.header = {"alg": "ES256", "kid": "ec1"}
    assert (await login(make_client(), provider)).subject == "alice"


async def test_metadata_and_keys_are_refetched_after_an_hour(
    client: OidcClient, provider: FakeProvider, clock: Clock
) -> None:
    await login(client, provider)
    clock.now += 3601
    await login(client, provider)
    assert provider.paths().count("/.well-known/openid-configuration") == 2
    assert provider.paths().count("/jwks") == 2


# --- claims ---------------------------------------------------------------------------------------------


async def test_issuer_claim_must_match(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"iss": "https://evil.example"}
    await refused(client, provider, "ID token issuer 'https://evil.example' is not 'https://idp.example'")


async def test_audience_must_include_client_id(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"aud": ["other-app"]}
    await refused(client, provider, r"audience \['other-app'\] does not include client id 'buildit'")


async def test_several_audiences_need_azp(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"aud": [CLIENT_ID, "other-app"]}
    await refused(client, provider, r"several audiences \['buildit', 'other-app'\] but no azp claim")
    provider.claims = {"aud": [CLIENT_ID, "other-app"], "azp": "other-app"}
    await refused(client, provider, r"issued to party 'other-app' \(azp\)")
    provider.claims = {"aud": [CLIENT_ID, "other-app"], "azp": CLIENT_ID}
    assert (await login(client, provider)).subject == "alice"


async def test_expiry_with_leeway(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"exp": int(NOW) - 30}  # within the minute of leeway
    assert (await login(client, provider)).subject == "alice"
    provider.claims = {"exp": int(NOW) - 120}
    await refused(client, provider, "ID token has expired")
    provider.claims = {"exp": None}
    await refused(client, provider, "time claims are invalid")


async def test_issued_in_the_future_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"iat": int(NOW) + 600, "exp": int(NOW) + 900}
    await refused(client, provider, "time claims are invalid")


async def test_missing_nonce_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"nonce": None}
    await refused(client, provider, "nonce does not match")


async def test_callback_from_another_issuer_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    await refused(
        client, provider, "callback comes from issuer 'https://evil.example'", iss="https://evil.example"
    )
    assert "/token" not in provider.paths()


# --- userinfo -------------------------------------------------------------------------------------------


async def test_groups_missing_from_the_id_token_come_from_userinfo(
    client: OidcClient, provider: FakeProvider
) -> None:
    provider.userinfo = {"sub": "alice", "groups": "developers, ops", "email": "ignored@example.com"}
    identity = await login(client, provider)
    assert identity.groups == ["developers", "ops"]
    assert identity.email == "alice@example.com"  # the ID token wins where both say
    userinfo = next(r for r in provider.requests if r.url.path == "/userinfo")
    assert userinfo.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_userinfo_about_another_subject_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    provider.userinfo = {"sub": "mallory", "groups": ["admins"]}
    await refused(client, provider, "answered for another subject")


async def test_groups_claim_of_the_wrong_shape_is_refused(client: OidcClient, provider: FakeProvider) -> None:
    provider.claims = {"groups": {"admins": True}}
    await refused(client, provider, "claim 'groups' is not a list of group names")


async def test_no_userinfo_endpoint_means_no_groups(provider: FakeProvider, make_client: MakeClient) -> None:
    del provider.discovery["userinfo_endpoint"]
    identity = await login(make_client(groups_claim="groups"), provider)
    assert identity.groups == []


# --- discovery and the token endpoint -------------------------------------------------------------------


async def test_discovery_for_another_issuer_is_refused(
    provider: FakeProvider, make_client: MakeClient
) -> None:
    provider.discovery["issuer"] = "https://evil.example"
    error = await refused(make_client(), provider, "names issuer 'https://evil.example'")
    assert "trailing slash" not in error.message


async def test_plain_http_endpoints_of_an_https_issuer_are_refused(
    provider: FakeProvider, make_client: MakeClient
) -> None:
    provider.discovery["token_endpoint"] = "http://idp.example/token"
    await refused(make_client(), provider, r"lacks a usable token_endpoint \(https URLs required\)")


async def test_token_endpoint_refusals_are_explained(client: OidcClient, provider: FakeProvider) -> None:
    provider.token_answer = httpx.Response(401, json={"error": "invalid_client"})
    await refused(client, provider, "invalid_client \\(is the client id and secret right\\?\\)")
    provider.token_answer = httpx.Response(500, text="<html>oops</html>")
    await refused(client, provider, "answered HTTP 500")
    provider.token_answer = httpx.Response(200, json={"access_token": ACCESS_TOKEN, "token_type": "Bearer"})
    await refused(client, provider, "returned no ID token; is the 'openid' scope allowed")


async def test_provider_error_text_is_clipped(client: OidcClient) -> None:
    pending = PendingLogin("s" * 43, "n" * 43, "v" * 64, REDIRECT_URI, NOW)
    with pytest.raises(Unauthenticated) as error:
        await client.finish(pending, {"error": "access_denied", "error_description": "x\x1b[31m" + "y" * 500})
    assert "\x1b" not in error.value.message and len(error.value.message) < 300
