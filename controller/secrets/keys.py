"""The master key: 32 random bytes, from `BUILDIT_SECRET_KEY` or the file `<data dir>/master.key`.

Standard library only, so settings can check `BUILDIT_SECRET_KEY` without loading the crypto stack.
The key's text form is the base64 of its 32 bytes (standard or URL-safe alphabet, padding optional).
The file is written with mode 0600 (atomically: a temporary file linked into place, so two
controllers starting at once never see half a key, and a key already there is never replaced).

A key is identified by its `key_id`, a fingerprint (HMAC-SHA256 of a constant under the key, 16 hex
digits) that says which key is which in messages and in the database's key check, and reveals
nothing about the key itself.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import stat
from pathlib import Path

KEY_BYTES = 32
ENV_VAR = "BUILDIT_SECRET_KEY"
KEY_FILE = "master.key"
#: A rotation's new key, written before the database is re-encrypted (see rotation.py).
NEW_KEY_FILE = "master.key.new"
#: The previous key, kept while a rotation swaps the files.
OLD_KEY_FILE = "master.key.old"
GENERATE_HINT = (
    "generate one with: python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
    " (or: openssl rand -base64 32)"
)

RESTORE_HINT = "restore the file from your backup (a new key cannot open what the old one encrypted)"


class MasterKeyError(Exception):
    """The master key is missing, malformed or not the database's: the controller must not start.

    The message says what is wrong, where, and how to fix it; it never contains key material.
    """


class MasterKey:
    """32 bytes of key material. Its repr shows the fingerprint only, never the bytes."""

    __slots__ = ("_material", "key_id")

    def __init__(self, material: bytes) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes, not {len(material)}")
        self._material = bytes(material)
        self.key_id = hmac.new(self._material, b"buildit master key id", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        """A new random key (the first start's, or a rotation's)."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def parse(cls, text: str, source: str, hint: str = GENERATE_HINT) -> MasterKey:
        """A key from its base64 text; MasterKeyError naming `source` and ending with `hint` (never
        quoting the text: a wrong key may still be someone's real key)."""
        cleaned = "".join(text.split())
        if not cleaned:
            raise MasterKeyError(
                f"{source} is empty: it must hold the base64 of {KEY_BYTES} random bytes; {hint}"
            )
        padded = cleaned + "=" * (-len(cleaned) % 4)
        try:
            material = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(
                f"{source} is not base64: it must hold the base64 of {KEY_BYTES} random bytes; " + hint
            ) from None
        if len(material) != KEY_BYTES:
            raise MasterKeyError(
                f"{source} decodes to {len(material)} bytes; a master key is the base64 of exactly "
                f"{KEY_BYTES} random bytes; {hint}"
            )
        return cls(material)

    @property
    def material(self) -> bytes:
        """The raw key, for the cipher (never printed, logged or stored in the database)."""
        return self._material

    def text(self) -> str:
        """The base64 form, as written to `master.key` and accepted by `BUILDIT_SECRET_KEY`."""
        return base64.b64encode(self._material).decode("ascii")

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasterKey) and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self.key_id)


def from_env(environ: dict[str, str] | os._Environ[str]) -> MasterKey | None:
    """The key in `BUILDIT_SECRET_KEY`, None when unset or empty; MasterKeyError when malformed."""
    text = environ.get(ENV_VAR, "")
    if not text.strip():
        return None
    return MasterKey.parse(text, ENV_VAR)


def read_file(path: Path) -> MasterKey | None:
    """The key stored at `path`, None when there is no such file; a readable-by-others file is made 0600."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        raise MasterKeyError(f"{path} is not a regular file; it must hold the master key (base64)")
    if mode & 0o077:
        path.chmod(0o600)  # a key others can read is no key: close it before using it
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"cannot read the master key {path}: {exc.__class__.__name__}") from None
    return MasterKey.parse(text, str(path), RESTORE_HINT)


def write_file(path: Path, key: MasterKey, replace: bool = False) -> MasterKey:
    """Store `key` at `path` (mode 0600, fsynced); returns the key the file holds afterwards.

    Without `replace`, an existing file wins (another process created it first) and its key is
    returned; with `replace`, the file is swapped atomically for the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.text() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                existing = read_file(path)
                if existing is None:  # removed in between: try once more
                    os.link(tmp, path)
                    return key
                return existing
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    sync_dir(path.parent)
    return key


def sync_dir(directory: Path) -> None:
    """Make a rename or link in `directory` durable (a key must not vanish in a power cut)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
