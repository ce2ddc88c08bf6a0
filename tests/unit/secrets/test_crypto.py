"""AES-256-GCM under the master key: round trips, fresh nonces, and refusals (never garbage)."""

from __future__ import annotations

import base64
import uuid

import pytest

from controller.secrets import aad
from controller.secrets.crypto import PREFIX, SecretBox, Undecryptable, is_sealed
from controller.secrets.keys import MasterKey

ROW, TENANT = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(MasterKey.generate())


@pytest.mark.parametrize("value", ["s3cr3t", "ünïcødé ✓", "multi\nline\nvalue", "x" * 65536])
def test_a_sealed_value_opens_to_itself(box: SecretBox, value: str) -> None:
    bound = aad.secret(ROW, TENANT, "API_TOKEN", "")
    sealed = box.seal(value, bound)
    assert sealed.startswith(PREFIX) and is_sealed(sealed)
    assert value not in sealed
    assert box.open(sealed, bound) == value


def test_every_seal_uses_a_new_nonce(box: SecretBox) -> None:
    bound = aad.column("repository", ROW, "webhook_secret")
    first, second = box.seal("same", bound), box.seal("same", bound)
    assert first != second
    nonce = lambda token: base64.b64decode(token[len(PREFIX) :])[:12]  # noqa: E731
    assert nonce(first) != nonce(second) and len(nonce(first)) == 12


def test_a_ciphertext_moved_to_another_row_name_scope_or_column_does_not_open(box: SecretBox) -> None:
    sealed = box.seal("value", aad.secret(ROW, TENANT, "API_TOKEN", ""))
    for other in (
        aad.secret(uuid.uuid4(), TENANT, "API_TOKEN", ""),
        aad.secret(ROW, uuid.uuid4(), "API_TOKEN", ""),
        aad.secret(ROW, TENANT, "OTHER", ""),
        aad.secret(ROW, TENANT, "API_TOKEN", f"pipeline:{uuid.uuid4()}"),
        aad.column("repository", ROW, "webhook_secret"),
    ):
        with pytest.raises(Undecryptable):
            box.open(sealed, other)
    webhook = box.seal("hook", aad.column("repository", ROW, "webhook_secret"))
    with pytest.raises(Undecryptable):
        box.open(webhook, aad.column("repository", ROW, "status_token"))


def test_another_key_or_a_damaged_value_is_refused(box: SecretBox) -> None:
    bound = aad.KEY_CHECK
    sealed = box.seal("value", bound)
    with pytest.raises(Undecryptable):
        SecretBox(MasterKey.generate()).open(sealed, bound)
    raw = bytearray(base64.b64decode(sealed[len(PREFIX) :]))
    raw[-1] ^= 1
    with pytest.raises(Undecryptable):
        box.open(PREFIX + base64.b64encode(bytes(raw)).decode(), bound)
    for garbage in ("plain text", PREFIX + "not base64!", PREFIX + base64.b64encode(b"short").decode(), ""):
        assert not is_sealed(garbage)
        with pytest.raises(Undecryptable):
            box.open(garbage, bound)


def test_the_key_and_the_box_never_show_key_material() -> None:
    key = MasterKey.generate()
    box = SecretBox(key)
    for text in (repr(key), str(key), f"{key}", repr(box)):
        assert key.text() not in text and key.key_id in text
