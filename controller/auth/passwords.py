"""Password hashing with argon2id (argon2-cffi): the one place passwords are hashed or checked."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from controller.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 1024

# argon2-cffi's defaults follow RFC 9106's second recommendation (argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Checked when the user does not exist, so a wrong name costs as long as a wrong password and
    the time taken tells nothing about which half was wrong. Made at first use, not at import: a
    hash takes ~0.1 s, and every process that imports the controller would pay it."""
    return _hasher.hash("buildit: no such user, but spend the same time")


def check_strength(password: str) -> None:
    """Refuse passwords an attacker would guess first (length is what matters; no composition rules)."""
    if len(password) < MIN_LENGTH:
        raise Invalid(f"the password must have at least {MIN_LENGTH} characters (it has {len(password)})")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"the password must have at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash stored for a password (salted; includes its parameters)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether `password` matches; with no stored hash (no user, OIDC-only user) a dummy is checked."""
    try:
        return _hasher.verify(stored_hash or _dummy(), password) and bool(stored_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether a stored hash uses weaker parameters than today's (re-hashed at the next login)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
