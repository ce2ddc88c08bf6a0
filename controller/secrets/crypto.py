"""AES-256-GCM under the master key: the only module that imports `cryptography`.

Each value gets a fresh random 96-bit nonce; the associated data (see aad.py) binds the ciphertext
to what it is, so a ciphertext copied to another row, column or secret name does not decrypt.
Sealed values are text, so they fit the columns that held plain text before:

    enc:v1:<base64 of nonce (12 bytes) || ciphertext || tag (16 bytes)>
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.secrets.keys import MasterKey

PREFIX = "enc:v1:"
NONCE_BYTES = 12
TAG_BYTES = 16


class Undecryptable(Exception):
    """A sealed value that does not open: another key, another place (associated data), or damage.

    Never carries the value; callers name the row or secret it belongs to.
    """


class SecretBox:
    """Seals and opens values under one master key. Its repr names the key's fingerprint only."""

    __slots__ = ("_aead", "key")

    def __init__(self, key: MasterKey) -> None:
        self.key = key
        self._aead = AESGCM(key.material)

    def seal(self, plaintext: str, aad: bytes) -> str:
        """`plaintext` encrypted and bound to `aad`, as storable text (a new nonce every time)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad)
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, token: str, aad: bytes) -> str:
        """The plaintext of a sealed value bound to `aad`; Undecryptable otherwise (never garbage)."""
        raw = _decode(token)
        if raw is None:
            raise Undecryptable("not a sealed value")
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except InvalidTag:
            raise Undecryptable("the value does not decrypt with this key and associated data") from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:  # cannot happen for what seal() wrote; refuse rather than guess
            raise Undecryptable("the decrypted value is not UTF-8 text") from None

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key.key_id})"


def is_sealed(value: str) -> bool:
    """Whether `value` has the form of a sealed value (it may still not open under a given key)."""
    return _decode(value) is not None


def _decode(token: str) -> bytes | None:
    if not token.startswith(PREFIX):
        return None
    try:
        raw = base64.b64decode(token[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= NONCE_BYTES + TAG_BYTES else None
