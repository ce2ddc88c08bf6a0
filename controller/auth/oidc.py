"""OIDC login: the authorization-code flow with PKCE against one OpenID provider, as a client.

One concept, kept in one module past 500 lines on purpose because the checks of a login are read
and reviewed together: the relying party's half of OpenID Connect Core §3.1. Discover the provider,
send the browser to it (`begin`), and turn what comes back to the callback into a verified identity
(`finish`). It knows nothing of users, sessions or routes; `controller.auth`'s login pages keep the
`PendingLogin` in the server-side session between the two calls and map the `OidcIdentity` to a
user. This module is the only importer of authlib and joserfc (import-linter contract): authlib for
the OAuth 2.0 request encoding, random tokens and the PKCE challenge, joserfc for JWS/JWK.

Every failure raises `controller.errors.Unauthenticated` whose message tells an operator what to fix
("OIDC: ID token audience [...] does not include client id ..."); no message carries a token, a code,
the client secret or the PKCE verifier.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import Key, KeySet

from controller.auth.oidc_settings import OidcSettings
from controller.errors import Unauthenticated

__all__ = [
    "ID_TOKEN_ALGORITHMS",
    "PENDING_LOGIN_TTL_S",
    "OidcClient",
    "OidcIdentity",
    "OidcSettings",
    "PendingLogin",
    "ProviderMetadata",
]

#: A login not finished within this many seconds of `begin` is refused (the user starts again).
PENDING_LOGIN_TTL_S = 600.0
#: Clock skew tolerated between BuildIt and the provider for the ID token's exp/iat/nbf.
CLOCK_LEEWAY_S = 60
#: Discovery documents and key sets are refetched after this long, so a key the provider has
#: withdrawn stops being trusted within the hour; an unknown `kid` refetches the keys at once.
METADATA_TTL_S = 3600.0
#: Timeout of each request to the provider (discovery, keys, token, userinfo).
HTTP_TIMEOUT_S = 10.0

#: Signature algorithms accepted on ID tokens, and the key type each needs. Only asymmetric ones:
#: `none` proves nothing, and accepting HS* would let anyone holding a public key from the JWKS
#: (used as an HMAC secret) forge tokens; the HS*-with-client-secret variant of the spec is not
#: supported, every provider can sign with RS256.
ID_TOKEN_ALGORITHMS: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
}

_STATE_CHARS = 43  # ~256 bits of letters and digits, like the PKCE verifier's minimum length
_VERIFIER_CHARS = 64  # RFC 7636 §4.1: 43-128 unreserved characters
_MAX_PROVIDER_TEXT = 200  # longest provider-sent text (error_description) copied into a message


@dataclass(frozen=True)
class PendingLogin:
    """What `finish` needs from `begin`: kept server-side (the session) while the browser is away.

    Never send it to the browser: the verifier and nonce are what make a stolen code useless.
    """

    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    #: Seconds since the epoch when `begin` made it.
    created_at: float

    def to_dict(self) -> dict[str, str | float]:
        """A small JSON-serialisable dict for the session store."""
        return {
            "state": self.state,
            "nonce": self.nonce,
            "code_verifier": self.code_verifier,
            "redirect_uri": self.redirect_uri,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PendingLogin:
        """The inverse of `to_dict`; a damaged or foreign dict is an Unauthenticated (start again)."""
        try:
            texts = {k: data[k] for k in ("state", "nonce", "code_verifier", "redirect_uri")}
            created_at = data["created_at"]
        except (KeyError, TypeError):
            raise Unauthenticated(
                "OIDC: the pending login in this session is incomplete; sign in again"
            ) from None
        if (
            not all(isinstance(v, str) and v for v in texts.values())
            or isinstance(created_at, bool)
            or not isinstance(created_at, int | float)
        ):
            raise Unauthenticated("OIDC: the pending login in this session is malformed; sign in again")
        return cls(
            state=str(texts["state"]),
            nonce=str(texts["nonce"]),
            code_verifier=str(texts["code_verifier"]),
            redirect_uri=str(texts["redirect_uri"]),
            created_at=float(created_at),
        )

    def expired(self, now: float, ttl_s: float = PENDING_LOGIN_TTL_S) -> bool:
        """True once `ttl_s` has passed since `begin` (or when the clock went backwards a lot)."""
        return not (self.created_at - CLOCK_LEEWAY_S <= now <= self.created_at + ttl_s)


@dataclass(frozen=True)
class OidcIdentity:
    """Who the provider says signed in: what the login pages need to find or create the user."""

    issuer: str
    #: The provider's stable, never reassigned id of the user (`sub`); key users on (issuer, subject).
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    #: From the configured username claim, else the email's local part, else `sub`.
    username: str
    #: Values of the configured groups claim (empty when none is configured or the user has none).
    groups: list[str]


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the provider's discovery document this client uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None
    #: As listed by the provider; the spec's default when it lists none.
    token_endpoint_auth_methods: tuple[str, ...] = ("client_secret_basic",)
    id_token_signing_algs: tuple[str, ...] = ("RS256",)
    #: None when the provider does not say (many support PKCE without listing it).
    code_challenge_methods: tuple[str, ...] | None = None


class OidcClient:
    """The relying party for one provider: `begin` a login, `finish` it into an `OidcIdentity`.

    Holds no per-login state (that is the `PendingLogin`), so one instance serves every request
    and every controller replica can finish a login another one began. The discovery document and
    the provider's keys are cached per instance. Pass `http` to share a client (proxies, a custom
    CA bundle); otherwise one is made and `aclose` closes it.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        pending_ttl_s: float = PENDING_LOGIN_TTL_S,
    ) -> None:
        self.settings = settings
        self._http = http if http is not None else httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self._owns_http = http is None
        self._clock = clock
        self._pending_ttl_s = pending_ttl_s
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        # One fetch at a time: a burst of logins after a restart must not fetch N copies.
        self._metadata_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"OidcClient(issuer={self.settings.issuer!r}, client_id={self.settings.client_id!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if this instance made it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- the flow ------------------------------------------------------------------------------

    async def begin(self, redirect_uri: str) -> tuple[str, PendingLogin]:
        """The URL to send the browser to, and what to keep in the session until the callback.

        `redirect_uri` must be registered at the provider exactly as given (BuildIt's
        `<public URL>/login/oidc/callback`).
        """
        meta = await self.discover()
        if (
            self.settings.is_public_client
            and meta.code_challenge_methods is not None
            and "S256" not in meta.code_challenge_methods
        ):
            raise Unauthenticated(
                f"OIDC: provider {meta.issuer} does not support PKCE with S256, which a public client "
                "(no BUILDIT_OIDC_CLIENT_SECRET) relies on; set a client secret or enable PKCE there"
            )
        pending = PendingLogin(
            state=generate_token(_STATE_CHARS),
            nonce=generate_token(_STATE_CHARS),
            code_verifier=generate_token(_VERIFIER_CHARS),
            redirect_uri=redirect_uri,
            created_at=self._clock(),
        )
        url = prepare_grant_uri(
            meta.authorization_endpoint,
            client_id=self.settings.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(self.settings.scopes),
            state=pending.state,
            nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256",
        )
        return str(url), pending

    async def finish(self, pending: PendingLogin, params: Mapping[str, str]) -> OidcIdentity:
        """Verify the callback's query `params` against `pending` and return who signed in.

        The caller drops `pending` from the session before calling this, so a callback URL can
        be used once; the provider refuses a second use of the code as well.
        """
        error = params.get("error")
        if error:
            description = params.get("error_description")
            detail = f" ({_clip(description)})" if description else ""
            raise Unauthenticated(f"OIDC: the provider refused the login: {_clip(error)}{detail}")
        if pending.expired(self._clock(), self._pending_ttl_s):
            raise Unauthenticated(
                f"OIDC: the login took longer than {int(self._pending_ttl_s // 60)} minutes; sign in again"
            )
        state = params.get("state") or ""
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise Unauthenticated(
                "OIDC: the callback's state does not match this session's login (a forged or stale "
                "callback, or the login was started in another browser); sign in again"
            )
        meta = await self.discover()
        # RFC 9207: a provider that names itself in the response must be the one we sent the user to.
        if "iss" in params and params["iss"] != meta.issuer:
            raise Unauthenticated(
                f"OIDC: the callback comes from issuer {_clip(params['iss'])!r}, not {meta.issuer!r}"
            )
        code = params.get("code")
        if not code:
            raise Unauthenticated("OIDC: the callback carries no authorization code")
        tokens = await self._exchange_code(meta, pending, code)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise Unauthenticated(
                f"OIDC: the token endpoint returned no ID token; is the 'openid' scope allowed for "
                f"client {self.settings.client_id!r}?"
            )
        claims = await self._verify_id_token(meta, id_token, pending.nonce)
        access_token = tokens.get("access_token")
        if self._needs_userinfo(claims) and meta.userinfo_endpoint and isinstance(access_token, str):
            extra = await self._userinfo(meta.userinfo_endpoint, access_token, str(claims["sub"]))
            # The ID token is the authority; userinfo only fills in what it lacks.
            claims = {**extra, **claims}
        return self._identity(claims)

    # --- discovery and keys --------------------------------------------------------------------

    async def discover(self, *, refresh: bool = False) -> ProviderMetadata:
        """The provider's metadata from `<issuer>/.well-known/openid-configuration`, cached."""
        async with self._metadata_lock:
            if (
                not refresh
                and self._metadata is not None
                and self._clock() - self._metadata_at < METADATA_TTL_S
            ):
                return self._metadata
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = await self._get_json(url, "discovery document")
            self._metadata = self._parse_metadata(doc, url)
            self._metadata_at = self._clock()
            return self._metadata

    def _parse_metadata(self, doc: Mapping[str, Any], source: str) -> ProviderMetadata:
        issuer = self.settings.issuer
        if doc.get("issuer") != issuer:
            hint = (
                " (they differ only in the trailing slash)"
                if isinstance(doc.get("issuer"), str) and str(doc["issuer"]).rstrip("/") == issuer.rstrip("/")
                else ""
            )
            raise Unauthenticated(
                f"OIDC: the discovery document at {source} names issuer {_clip(str(doc.get('issuer')))!r}, "
                f"but BUILDIT_OIDC_ISSUER is {issuer!r}{hint}; set BUILDIT_OIDC_ISSUER to the "
                "provider's issuer exactly"
            )
        # Endpoints of an https issuer must be https too: the token and key requests carry the
        # client secret and decide which signatures are trusted.
        https_only = issuer.startswith("https://")

        def url(name: str) -> str | None:
            value = doc.get(name)
            return value if _is_url(value, https_only) else None

        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if url(k) is None]
        if missing:
            raise Unauthenticated(
                f"OIDC: the discovery document at {source} lacks a usable {', '.join(missing)}"
                + (" (https URLs required)" if https_only else "")
            )
        return ProviderMetadata(
            issuer=issuer,
            authorization_endpoint=doc["authorization_endpoint"],
            token_endpoint=doc["token_endpoint"],
            jwks_uri=doc["jwks_uri"],
            userinfo_endpoint=url("userinfo_endpoint"),
            end_session_endpoint=url("end_session_endpoint"),
            token_endpoint_auth_methods=_strings(doc.get("token_endpoint_auth_methods_supported"))
            or ("client_secret_basic",),
            id_token_signing_algs=_strings(doc.get("id_token_signing_alg_values_supported")) or ("RS256",),
            code_challenge_methods=_strings(doc.get("code_challenge_methods_supported")) or None,
        )

    async def _key_set(self, meta: ProviderMetadata, *, refresh: bool = False) -> KeySet:
        async with self._keys_lock:
            if not refresh and self._keys is not None and self._clock() - self._keys_at < METADATA_TTL_S:
                return self._keys
            doc = await self._get_json(meta.jwks_uri, "signing keys (JWKS)")
            try:
                keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise Unauthenticated(
                    f"OIDC: the provider's key set at {meta.jwks_uri} is unusable: {type(exc).__name__}"
                ) from None
            self._keys, self._keys_at = keys, self._clock()
            return keys

    # --- token endpoint, ID token, userinfo -----------------------------------------------------

    def _token_auth_method(self, meta: ProviderMetadata) -> str:
        if self.settings.is_public_client:
            return "none"
        for method in ("client_secret_basic", "client_secret_post"):
            if method in meta.token_endpoint_auth_methods:
                return method
        raise Unauthenticated(
            "OIDC: the provider's token endpoint accepts only "
            f"{', '.join(meta.token_endpoint_auth_methods)}; BuildIt authenticates with "
            "client_secret_basic or client_secret_post"
        )

    async def _exchange_code(
        self, meta: ProviderMetadata, pending: PendingLogin, code: str
    ) -> dict[str, Any]:
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
        auth = ClientAuth(self.settings.client_id, self.settings.client_secret, self._token_auth_method(meta))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        url, headers, body = auth.prepare("POST", meta.token_endpoint, headers, body)
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unauthenticated(
                f"OIDC: could not reach the token endpoint {meta.token_endpoint}: {type(exc).__name__}"
            ) from None
        data = _json_object(response)
        if response.status_code != 200 or "error" in (data or {}):
            error = (data or {}).get("error")
            if isinstance(error, str):
                description = (data or {}).get("error_description")
                detail = f" ({_clip(str(description))})" if description else ""
                hint = (
                    " (is the client id and secret right?)"
                    if error in ("invalid_client", "unauthorized_client")
                    else ""
                )
                raise Unauthenticated(
                    f"OIDC: the token endpoint refused the authorization code: {_clip(error)}{detail}{hint}"
                )
            raise Unauthenticated(
                f"OIDC: the token endpoint {meta.token_endpoint} answered HTTP {response.status_code}"
            )
        if data is None:
            raise Unauthenticated(f"OIDC: the token endpoint {meta.token_endpoint} did not answer JSON")
        return data

    async def _verify_id_token(self, meta: ProviderMetadata, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"OIDC: the ID token is not a signed JWT ({type(exc).__name__})") from None
        alg = header.get("alg")
        if (
            not isinstance(alg, str)
            or alg not in ID_TOKEN_ALGORITHMS
            or alg not in meta.id_token_signing_algs
        ):
            accepted = [a for a in meta.id_token_signing_algs if a in ID_TOKEN_ALGORITHMS] or ["RS256"]
            raise Unauthenticated(
                f"OIDC: the ID token is signed with alg {_clip(str(alg))!r}; BuildIt accepts "
                f"{', '.join(accepted)} from this provider (asymmetric signatures only)"
            )
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        keys = _candidate_keys(await self._key_set(meta), kid, alg)
        if not keys:
            # The provider may have rotated its keys since we fetched them: look once more.
            keys = _candidate_keys(await self._key_set(meta, refresh=True), kid, alg)
        if not keys:
            raise Unauthenticated(
                f"OIDC: the provider's key set at {meta.jwks_uri} has no {ID_TOKEN_ALGORITHMS[alg]} key "
                f"with kid {kid!r} for the ID token's signature"
            )
        claims = _verified_claims(id_token, keys, alg)
        self._check_claims(meta, claims, nonce)
        return claims

    def _check_claims(self, meta: ProviderMetadata, claims: dict[str, Any], nonce: str) -> None:
        client_id = self.settings.client_id
        if claims.get("iss") != meta.issuer:
            raise Unauthenticated(
                f"OIDC: ID token issuer {_clip(str(claims.get('iss')))!r} is not {meta.issuer!r}"
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if client_id not in audiences:
            raise Unauthenticated(
                f"OIDC: ID token audience {_clip(str(audiences))} does not include client id {client_id!r}; "
                "is BUILDIT_OIDC_CLIENT_ID the id the provider issued to BuildIt?"
            )
        azp = claims.get("azp")
        if azp is None and len(audiences) > 1:
            raise Unauthenticated(
                f"OIDC: ID token has several audiences {_clip(str(audiences))} but no azp claim "
                f"naming client id {client_id!r}"
            )
        if azp is not None and azp != client_id:
            raise Unauthenticated(
                f"OIDC: ID token was issued to party {_clip(str(azp))!r} (azp), "
                f"not to client id {client_id!r}"
            )
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=CLOCK_LEEWAY_S,
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise Unauthenticated(
                "OIDC: the ID token has expired; if logins fail like this repeatedly, check that the "
                "clocks of BuildIt and the provider agree"
            ) from None
        except JoseError as exc:
            raise Unauthenticated(
                f"OIDC: the ID token's time claims are invalid: {exc}; check that the clocks of BuildIt "
                "and the provider agree"
            ) from None
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce.encode(), nonce.encode()):
            raise Unauthenticated(
                "OIDC: the ID token's nonce does not match this login (a replayed or substituted ID "
                "token); sign in again"
            )
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise Unauthenticated("OIDC: the ID token has no subject (sub)")

    def _needs_userinfo(self, claims: Mapping[str, Any]) -> bool:
        """Ask userinfo only for what the login needs and the ID token lacks (groups, email).

        Many providers (Okta, Keycloak without mappers, Google for some scopes) keep these out of
        the ID token to keep it small; one extra request per login is cheap.
        """
        groups = self.settings.groups_claim
        return (groups is not None and groups not in claims) or "email" not in claims

    async def _userinfo(self, url: str, access_token: str, subject: str) -> dict[str, Any]:
        try:
            response = await self._http.get(
                url, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise Unauthenticated(
                f"OIDC: could not reach the userinfo endpoint {url}: {type(exc).__name__}"
            ) from None
        data = _json_object(response)
        if response.status_code != 200 or data is None:
            raise Unauthenticated(
                f"OIDC: the userinfo endpoint {url} answered HTTP {response.status_code}"
                + ("" if data is not None else " without a JSON object (signed userinfo is not supported)")
            )
        # OIDC Core §5.3.2: a userinfo answer about another subject must not be used.
        if data.get("sub") != subject:
            raise Unauthenticated(f"OIDC: the userinfo endpoint {url} answered for another subject")
        return data

    def _identity(self, claims: Mapping[str, Any]) -> OidcIdentity:
        subject = str(claims["sub"])
        email = _text(claims.get("email"))
        username = _text(claims.get(self.settings.username_claim))
        if username is None and email is not None and "@" in email:
            username = email.split("@", 1)[0] or None
        groups: list[str] = []
        if self.settings.groups_claim is not None:
            groups = _groups(claims.get(self.settings.groups_claim), self.settings.groups_claim)
        return OidcIdentity(
            issuer=str(claims["iss"]),
            subject=subject,
            email=email,
            email_verified=_boolean(claims.get("email_verified")),
            name=_text(claims.get("name")),
            username=username or subject,
            groups=groups,
        )

    # --- HTTP ----------------------------------------------------------------------------------

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise Unauthenticated(
                f"OIDC: could not fetch the provider's {what} from {url}: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code != 200:
            raise Unauthenticated(
                f"OIDC: fetching the provider's {what} from {url} answered HTTP {response.status_code}"
            )
        data = _json_object(response)
        if data is None:
            raise Unauthenticated(f"OIDC: the provider's {what} at {url} is not a JSON object")
        return data


def _candidate_keys(keys: KeySet, kid: str | None, alg: str) -> list[Key]:
    """Keys that may have made this signature: the right type, meant for signing, matching kid."""
    kty = ID_TOKEN_ALGORITHMS[alg]
    return [
        key
        for key in keys
        if key.key_type == kty
        and (kid is None or key.kid == kid)
        and key.get("use") in (None, "sig")
        and key.alg in (None, alg)
    ]


def _verified_claims(id_token: str, keys: list[Key], alg: str) -> dict[str, Any]:
    """The claims of `id_token` if one of `keys` verifies its signature with exactly `alg`."""
    for key in keys:
        try:
            token = jwt.decode(id_token, key, algorithms=[alg])
        except JoseError:
            continue
        return dict(token.claims)
    raise Unauthenticated(
        "OIDC: the ID token's signature does not verify against the provider's keys (a forged "
        "token, or a provider that signs with keys it does not publish)"
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _groups(value: object, claim: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # Some providers send one group as a string, or several separated by spaces or commas.
        return [g for g in value.replace(",", " ").split() if g]
    if isinstance(value, list) and all(isinstance(g, str) for g in value):
        return [g for g in value if g]
    raise Unauthenticated(
        f"OIDC: claim {claim!r} is not a list of group names; check BUILDIT_OIDC_GROUPS_CLAIM"
    )


def _boolean(value: object) -> bool:
    # Some providers (older AWS Cognito) send "true"/"false" as strings.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _is_url(value: object, https_only: bool) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in (("https",) if https_only else ("https", "http")) and bool(parts.netloc)


def _clip(text: str) -> str:
    """Provider- or browser-sent text made safe to show: printable, short."""
    printable = "".join(c if c.isprintable() else "?" for c in text)
    return printable if len(printable) <= _MAX_PROVIDER_TEXT else printable[:_MAX_PROVIDER_TEXT] + "…"
