"""Controller settings: flags win over environment variables, which win over defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from controller.git.sources import host_patterns
from controller.privatefiles import write_private
from controller.secrets import keys
from controller.secrets.keys import MasterKey, MasterKeyError
from controller.tls import read_tls_files


@dataclass(frozen=True)
class ControllerSettings:
    """Everything `buildit controller` / `buildit up` can be told (see the README's table)."""

    data_dir: Path
    database_url: str
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 9090
    registration_token: str = ""
    lease_ttl_s: float = 15.0
    heartbeat_s: float = 3.0
    max_body_bytes: int = 1024 * 1024
    #: Largest total size of one stage's artifacts (BUILDIT_ARTIFACT_MAX_BYTES); more is refused.
    artifact_max_bytes: int = 1024**3
    #: The controller's URL as agents and forges reach it (mirrors, commit-status links);
    #: default http://<http host>:<http port>.
    public_url: str = ""
    #: gRPC over TLS: the certificate chain (PEM) and its private key, both or neither
    #: (BUILDIT_GRPC_TLS_CERT / BUILDIT_GRPC_TLS_KEY); None: plaintext gRPC.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    #: Seconds a request body may take to arrive in full (BUILDIT_HTTP_BODY_TIMEOUT); then 408.
    http_body_timeout_s: float = 30.0
    #: Hosts tenant maintainers may register repositories on (BUILDIT_REPO_HOSTS; see
    #: controller.repos.commands); empty: any host that is not an internal address.
    repo_hosts: tuple[str, ...] = ()
    #: Notifications (controller.notify.delivery): seconds before the first retry (doubling after
    #: each failed attempt), attempts in all, and the time one request may take.
    notify_retry_s: float = 10.0
    notify_attempts: int = 8
    notify_timeout_s: float = 10.0
    #: The master key from BUILDIT_SECRET_KEY; None: `<data dir>/master.key` (made at first start).
    secret_key: MasterKey | None = field(default=None, repr=False)
    #: `buildit up`: how long its agent's running stages get to finish after the first Ctrl-C
    #: (BUILDIT_STOP_GRACE); then they are cancelled ("controller stopped").
    stop_grace_s: float = 10.0

    @classmethod
    def from_env(cls, **overrides: object) -> ControllerSettings:
        """Read BUILDIT_* variables; `overrides` (from flags; None = not given) take precedence."""
        given = {k: v for k, v in overrides.items() if v is not None}
        env = os.environ
        storage = StorageSettings.from_env(given.get("data_dir"), given.get("database_url"))
        data_dir, database_url = storage.data_dir, storage.database_url
        token = str(given.get("registration_token") or env.get("BUILDIT_REGISTRATION_TOKEN") or "")
        if not token:
            token = _stored_token(data_dir)
        cert, key = _tls_pair(
            given.get("grpc_tls_cert") or env.get("BUILDIT_GRPC_TLS_CERT"),
            given.get("grpc_tls_key") or env.get("BUILDIT_GRPC_TLS_KEY"),
        )
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            http_host=str(given.get("http_host") or env.get("BUILDIT_HTTP_HOST", "127.0.0.1")),
            http_port=_int(given.get("http_port"), env.get("BUILDIT_HTTP_PORT"), 8080, "BUILDIT_HTTP_PORT"),
            grpc_host=str(given.get("grpc_host") or env.get("BUILDIT_GRPC_HOST", "127.0.0.1")),
            grpc_port=_int(given.get("grpc_port"), env.get("BUILDIT_GRPC_PORT"), 9090, "BUILDIT_GRPC_PORT"),
            registration_token=token,
            lease_ttl_s=_float(env.get("BUILDIT_LEASE_TTL"), 15.0, "BUILDIT_LEASE_TTL"),
            heartbeat_s=_float(env.get("BUILDIT_HEARTBEAT_INTERVAL"), 3.0, "BUILDIT_HEARTBEAT_INTERVAL"),
            artifact_max_bytes=_bytes(
                env.get("BUILDIT_ARTIFACT_MAX_BYTES"), 1024**3, "BUILDIT_ARTIFACT_MAX_BYTES"
            ),
            public_url=_url(given.get("public_url") or env.get("BUILDIT_PUBLIC_URL", "")),
            grpc_tls_cert=cert,
            grpc_tls_key=key,
            http_body_timeout_s=_float(
                env.get("BUILDIT_HTTP_BODY_TIMEOUT"), 30.0, "BUILDIT_HTTP_BODY_TIMEOUT"
            ),
            repo_hosts=host_patterns(env.get("BUILDIT_REPO_HOSTS", "")),
            notify_retry_s=_float(env.get("BUILDIT_NOTIFY_RETRY"), 10.0, "BUILDIT_NOTIFY_RETRY"),
            notify_attempts=_count(env.get("BUILDIT_NOTIFY_ATTEMPTS"), 8, "BUILDIT_NOTIFY_ATTEMPTS"),
            notify_timeout_s=_float(env.get("BUILDIT_NOTIFY_TIMEOUT"), 10.0, "BUILDIT_NOTIFY_TIMEOUT"),
            secret_key=storage.secret_key,
            stop_grace_s=_float(env.get("BUILDIT_STOP_GRACE"), 10.0, "BUILDIT_STOP_GRACE"),
        )


def _tls_pair(cert: object, key: object) -> tuple[Path | None, Path | None]:
    """Both TLS files or neither; each is read and checked now, so a bad one stops the start."""
    if not cert and not key:
        return None, None
    if not cert or not key:
        given, missing = (
            ("--grpc-tls-cert", "--grpc-tls-key") if cert else ("--grpc-tls-key", "--grpc-tls-cert")
        )
        raise ValueError(
            f"{given} needs {missing} too: gRPC TLS takes a certificate and its private key "
            "(BUILDIT_GRPC_TLS_CERT and BUILDIT_GRPC_TLS_KEY), or neither for plaintext"
        )
    cert_path, key_path = Path(str(cert)).resolve(), Path(str(key)).resolve()
    read_tls_files(cert_path, key_path)
    return cert_path, key_path


@dataclass(frozen=True)
class StorageSettings:
    """Where a controller keeps its state, and its master key: all offline maintenance needs."""

    data_dir: Path
    database_url: str
    secret_key: MasterKey | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, data_dir: object = None, database_url: object = None) -> StorageSettings:
        """BUILDIT_DATA_DIR, BUILDIT_DATABASE_URL, BUILDIT_SECRET_KEY, under the flags given (not None)."""
        env = os.environ
        directory = Path(str(data_dir or env.get("BUILDIT_DATA_DIR", ".buildit"))).resolve()
        url = str(database_url or env.get("BUILDIT_DATABASE_URL") or f"sqlite:///{directory / 'buildit.db'}")
        return cls(directory, url, _secret_key(env))


def _secret_key(env: os._Environ[str]) -> MasterKey | None:
    """BUILDIT_SECRET_KEY, checked now: a malformed key is a configuration error (never quoted)."""
    try:
        return keys.from_env(env)
    except MasterKeyError as exc:
        raise ValueError(str(exc)) from None


def _url(value: object) -> str:
    text = str(value or "").strip().rstrip("/")
    if text and not text.startswith(("http://", "https://")):
        raise ValueError(
            f"BUILDIT_PUBLIC_URL must be an http(s) URL such as http://ci.example:8080, got {text!r}"
        )
    return text


def _int(flag: object, env: str | None, default: int, name: str) -> int:
    if flag is not None:
        return int(str(flag))
    if env is None or env == "":
        return default
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"{name} must be a port number, got {env!r}") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be between 0 and 65535, got {value}")
    return value


def _float(env: str | None, default: float, name: str) -> float:
    if env is None or env == "":
        return default
    try:
        value = float(env)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {env!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _count(env: str | None, default: int, name: str) -> int:
    """A whole number from 1 to 100."""
    if env is None or env.strip() == "":
        return default
    text = env.strip()
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise ValueError(f"{name} must be a whole number from 1 to 100, got {env!r}")
    return int(text)


def _bytes(env: str | None, default: int, name: str) -> int:
    """A positive number of bytes, written as digits (e.g. 1073741824 for 1 GiB)."""
    if env is None or env.strip() == "":
        return default
    text = env.strip().replace("_", "")
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(
            f"{name} must be a positive whole number of bytes (e.g. 1073741824 for 1 GiB), got {env!r}"
        )
    return int(text)


def _stored_token(data_dir: Path) -> str:
    """A registration token generated once and kept in the data dir (mode 0600)."""
    path = data_dir / "registration-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    write_private(path, token + "\n")
    return token
