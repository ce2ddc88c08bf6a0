"""The OIDC login flow against a real OpenID provider on loopback (oidc-provider-mock).

The provider is a real Flask/authlib server: real discovery, JWKS, RS256-signed ID tokens and
single-use authorization codes. The test plays the browser with httpx: it opens the authorization
URL `OidcClient.begin` made, submits the provider's form for a subject, takes the redirect's
Location (no BuildIt server is needed for that) and passes its query to `OidcClient.finish`.

The mock does not check PKCE, so `PkceEnforcingProvider` wraps it in a WSGI middleware that does
(RFC 7636, S256 only), computed independently of authlib: a login whose verifier does not match the
challenge it sent is refused by the provider, as a real one would.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import werkzeug.serving

with warnings.catch_warnings():
    # The provider imports authlib modules that authlib has deprecated; not ours to fix. (authlib
    # installs an "always" filter for its warnings when first imported, so the ignore comes after.)
    import authlib.deprecate  # noqa: F401

    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock

from controller.auth.oidc import OidcClient, OidcIdentity, OidcSettings, PendingLogin
from controller.errors import Unauthenticated

# Nor is its use of deprecated authlib APIs while it serves.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

REDIRECT_URI = "http://127.0.0.1:8080/login/oidc/callback"
SECRET = "client-secret-that-must-never-leak"

USERS = [
    oidc_provider_mock.User(
        sub="alice",
        claims={
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Example",
            "preferred_username": "alice.w",
            "groups": ["developers", "release-managers"],
        },
    ),
    oidc_provider_mock.User(sub="bob-7f3a", claims={"email": "bob@example.com"}),
]

StartResponse = Callable[..., Any]


class PkceEnforcingProvider:
    """WSGI middleware over the mock provider: enforces PKCE S256 and records what clients sent."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.challenges: dict[str, tuple[str | None, str | None]] = {}
        #: One entry per token request: how the client authenticated ("basic", "post" or "none").
        self.token_auth: list[str] = []
        self.discovery_requests = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == "/.well-known/openid-configuration":
            with self.lock:
                self.discovery_requests += 1
        if path == "/oauth2/authorize" and method == "POST":
            query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
            challenge = (query.get("code_challenge"), query.get("code_challenge_method"))

            def remember_code(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                location = next((v for k, v in headers if k.lower() == "location"), "")
                code = dict(parse_qsl(urlsplit(location).query)).get("code")
                if code:
                    with self.lock:
                        self.challenges[code] = challenge
                return start_response(status, headers, *rest)

            return self.app(environ, remember_code)
        if path == "/oauth2/token" and method == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            form = dict(parse_qsl(body.decode()))
            with self.lock:
                self.token_auth.append(
                    "basic"
                    if environ.get("HTTP_AUTHORIZATION", "").startswith("Basic ")
                    else "post"
                    if "client_secret" in form
                    else "none"
                )
                challenge, challenge_method = self.challenges.get(form.get("code", ""), (None, None))
            verifier = form.get("code_verifier", "")
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if (
                form.get("grant_type") == "authorization_code"
                and challenge is not None  # an unknown code is the provider's to refuse
                and (challenge_method != "S256" or not verifier or expected.decode() != challenge)
            ):
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [b'{"error": "invalid_grant", "error_description": "PKCE verification failed"}']
        return self.app(environ, start_response)


@dataclasses.dataclass
class Provider:
    issuer: str
    recorder: PkceEnforcingProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """One provider for the module: each login gets its own codes and nonces from it."""
    # The mock's code grant accepts only client_secret_basic/_post (authlib's default list); allow
    # public clients too, as providers configured for PKCE-only clients do. PKCE is enforced above.
    grant = oidc_provider_mock._app.AuthorizationCodeGrant
    methods = grant.TOKEN_ENDPOINT_AUTH_METHODS
    grant.TOKEN_ENDPOINT_AUTH_METHODS = [*methods, "none"]
    app = oidc_provider_mock.app(require_nonce=True, user_claims=USERS)
    recorder = PkceEnforcingProvider(app)
    server = werkzeug.serving.make_server("127.0.0.1", 0, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Provider(issuer=f"http://127.0.0.1:{server.server_port}", recorder=recorder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        grant.TOKEN_ENDPOINT_AUTH_METHODS = methods


def settings(provider: Provider, **changes: Any) -> OidcSettings:
    base = OidcSettings(
        issuer=provider.issuer, client_id="buildit", client_secret=SECRET, groups_claim="groups"
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def client(provider: Provider) -> AsyncIterator[OidcClient]:
    async with OidcClient(settings(provider)) as oidc:
        yield oidc


async def authorize(url: str, *, sub: str = "alice", deny: bool = False) -> dict[str, str]:
    """Play the browser at the provider: open its page, submit its form, return the callback query."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        assert 'name="sub"' in page.text  # the provider's authorization form
        form = {"action": "deny"} if deny else {"sub": sub}
        answer = await browser.post(url, data=form)  # the form has no action: it posts to the page URL
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(parse_qsl(urlsplit(location).query))


async def login(oidc: OidcClient, *, sub: str = "alice") -> tuple[PendingLogin, dict[str, str]]:
    url, pending = await oidc.begin(REDIRECT_URI)
    return pending, await authorize(url, sub=sub)


def assert_clean(error: Unauthenticated, *secrets: str) -> None:
    """An operator-facing message: starts with OIDC and carries none of the secrets of the login."""
    assert error.message.startswith("OIDC: ")
    for secret in (SECRET, *secrets):
        assert secret not in str(error)
        assert secret not in repr(error)


# --- the flow ------------------------------------------------------------------------------------


async def test_login_returns_the_providers_identity(client: OidcClient, provider: Provider) -> None:
    url, pending = await client.begin(REDIRECT_URI)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["code_challenge_method"] == "S256"
    assert query["state"] == pending.state and query["nonce"] == pending.nonce
    assert pending.code_verifier not in url
    # The pending login survives the session store's JSON round trip.
    pending = PendingLogin.from_dict(pending.to_dict())

    identity = await client.finish(pending, await authorize(url))

    assert identity == OidcIdentity(
        issuer=provider.issuer,
        subject="alice",
        email="alice@example.com",
        email_verified=True,
        name="Alice Example",
        username="alice.w",
        groups=["developers", "release-managers"],
    )
    assert provider.recorder.token_auth[-1] == "basic"  # the spec's default; the mock lists none


async def test_username_falls_back_to_the_email_local_part(client: OidcClient) -> None:
    pending, params = await login(client, sub="bob-7f3a")
    identity = await client.finish(pending, params)
    assert (identity.subject, identity.username, identity.email) == ("bob-7f3a", "bob", "bob@example.com")
    assert identity.groups == [] and identity.email_verified is False and identity.name is None


async def test_public_client_authenticates_with_pkce_alone(provider: Provider) -> None:
    async with OidcClient(settings(provider, client_secret=None)) as oidc:
        pending, params = await login(oidc)
        identity = await oidc.finish(pending, params)
    assert identity.subject == "alice"
    assert provider.recorder.token_auth[-1] == "none"


async def test_discovery_and_keys_are_fetched_once(provider: Provider) -> None:
    before = provider.recorder.discovery_requests
    async with OidcClient(settings(provider)) as oidc:
        for _ in range(3):
            pending, params = await login(oidc)
            await oidc.finish(pending, params)
    assert provider.recorder.discovery_requests - before == 1


# --- refusals --------------------------------------------------------------------------------------


async def test_wrong_state_is_refused_before_the_code_is_spent(client: OidcClient) -> None:
    pending, params = await login(client)
    with pytest.raises(Unauthenticated, match="state does not match") as refused:
        await client.finish(pending, {**params, "state": "forged-" + pending.state[7:]})
    assert_clean(refused.value, params["code"], pending.code_verifier)
    with pytest.raises(Unauthenticated, match="state does not match"):
        await client.finish(pending, {k: v for k, v in params.items() if k != "state"})
    # The code was never sent to the provider, so the genuine callback still works.
    assert (await client.finish(pending, params)).subject == "alice"


async def test_replayed_code_is_refused_by_the_provider(client: OidcClient) -> None:
    pending, params = await login(client)
    await client.finish(pending, params)
    with pytest.raises(Unauthenticated, match="token endpoint refused the authorization code: invalid_grant"):
        await client.finish(pending, params)


async def test_wrong_pkce_verifier_is_refused_by_the_provider(client: OidcClient) -> None:
    pending, params = await login(client)
    other = dataclasses.replace(pending, code_verifier="x" * 64)
    with pytest.raises(Unauthenticated, match="PKCE verification failed") as refused:
        await client.finish(other, params)
    assert_clean(refused.value, params["code"], pending.code_verifier, other.code_verifier)


async def test_id_token_for_another_nonce_is_refused(client: OidcClient) -> None:
    pending, params = await login(client)
    tampered = dataclasses.replace(pending, nonce="n" * 43)
    with pytest.raises(Unauthenticated, match="nonce does not match") as refused:
        await client.finish(tampered, params)
    assert_clean(refused.value, params["code"], pending.code_verifier, pending.nonce, tampered.nonce)


class IssuedToAnotherClient(httpx.AsyncBaseTransport):
    """The network path to the token endpoint swaps in another client's credentials, so the
    provider answers with a genuine ID token whose audience is that other client: the token
    substitution the audience check exists for."""

    def __init__(self, other_client_id: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.other = other_client_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            basic = base64.b64encode(f"{self.other}:whatever".encode()).decode()
            request.headers["Authorization"] = f"Basic {basic}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_id_token_for_another_client_is_refused(provider: Provider) -> None:
    async with (
        httpx.AsyncClient(transport=IssuedToAnotherClient("other-app")) as http,
        OidcClient(settings(provider), http=http) as oidc,
    ):
        url, pending = await oidc.begin(REDIRECT_URI)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query)) | {"client_id": "other-app"}
        params = await authorize(urlunsplit(parts._replace(query=urlencode(query))))
        with pytest.raises(
            Unauthenticated, match=r"audience \['other-app'\] does not include client id 'buildit'"
        ) as refused:
            await oidc.finish(pending, params)
    assert_clean(refused.value, params["code"], pending.code_verifier)


async def test_provider_error_is_reported(client: OidcClient) -> None:
    url, pending = await client.begin(REDIRECT_URI)
    params = await authorize(url, deny=True)
    # This provider sends no state with the error (real ones usually do): the refusal is reported
    # either way, since an error grants nothing whoever sent it.
    assert params["error"] == "access_denied"
    with pytest.raises(Unauthenticated, match="the provider refused the login: access_denied"):
        await client.finish(pending, params)


async def test_issuer_mismatch_in_discovery_is_refused(provider: Provider) -> None:
    # A real misconfiguration: the provider's issuer has no trailing slash, the setting has one.
    async with OidcClient(settings(provider, issuer=provider.issuer + "/")) as oidc:
        with pytest.raises(Unauthenticated, match="differ only in the trailing slash") as refused:
            await oidc.begin(REDIRECT_URI)
    assert f"names issuer {provider.issuer!r}" in refused.value.message
    assert "BUILDIT_OIDC_ISSUER" in refused.value.message


async def test_expired_pending_login_is_refused(client: OidcClient) -> None:
    pending, params = await login(client)
    stale = dataclasses.replace(pending, created_at=pending.created_at - 11 * 60)
    with pytest.raises(Unauthenticated, match="took longer than 10 minutes"):
        await client.finish(stale, params)
    # Refused before the code was spent: the same callback within the time limit still works.
    assert (await client.finish(pending, params)).subject == "alice"


async def test_unreachable_provider_is_reported(provider: Provider) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with OidcClient(settings(provider, issuer=f"http://127.0.0.1:{port}")) as oidc:
        with pytest.raises(Unauthenticated, match="could not fetch the provider's discovery document"):
            await oidc.begin(REDIRECT_URI)
