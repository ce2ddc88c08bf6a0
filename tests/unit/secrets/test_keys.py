"""The master key: its text form, BUILDIT_SECRET_KEY, and the key file (mode 0600, never replaced)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from controller.secrets import keys
from controller.secrets.keys import ENV_VAR, MasterKey, MasterKeyError


def test_the_base64_forms_parse_to_the_same_key() -> None:
    material = os.urandom(32)
    standard = base64.b64encode(material).decode()
    urlsafe = base64.urlsafe_b64encode(material).decode().rstrip("=")
    parsed = [MasterKey.parse(text, "test") for text in (standard, urlsafe, f"  {standard}\n")]
    assert all(key == parsed[0] for key in parsed)
    assert parsed[0].material == material and MasterKey.parse(parsed[0].text(), "t") == parsed[0]
    assert len(parsed[0].key_id) == 16 and parsed[0].key_id != MasterKey.generate().key_id


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("not base64 at all!", "is not base64"),
        (base64.b64encode(b"sixteen bytes!!!").decode(), "decodes to 16 bytes"),
        (base64.b64encode(bytes(range(64))).decode(), "decodes to 64 bytes"),
    ],
)
def test_a_bad_buildit_secret_key_names_the_variable_and_how_to_make_one(value: str, problem: str) -> None:
    with pytest.raises(MasterKeyError) as caught:
        if value:
            keys.from_env({ENV_VAR: value})
        else:
            MasterKey.parse(value, ENV_VAR)
    message = str(caught.value)
    assert message.startswith(ENV_VAR) and problem in message
    assert "os.urandom(32)" in message and "openssl rand -base64 32" in message
    if value:
        assert value not in message  # a wrong key may be a real one: never echoed


def test_an_unset_or_blank_variable_means_the_key_file() -> None:
    assert keys.from_env({}) is None and keys.from_env({ENV_VAR: "  "}) is None


def test_the_key_file_is_0600_and_an_existing_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "data" / keys.KEY_FILE
    first = keys.write_file(path, MasterKey.generate())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.read_file(path) == first
    # A second starter that generated its own key gets the one already there.
    assert keys.write_file(path, MasterKey.generate()) == first
    assert keys.read_file(path) == first
    replaced = keys.write_file(path, MasterKey.generate(), replace=True)
    assert keys.read_file(path) == replaced != first
    assert [p.name for p in path.parent.iterdir()] == [keys.KEY_FILE]  # no temporary file left


def test_a_key_file_others_can_read_is_closed_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / keys.KEY_FILE
    assert keys.read_file(path) is None
    key = MasterKey.generate()
    path.write_text(key.text())
    path.chmod(0o644)
    assert keys.read_file(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("garbage!")
    with pytest.raises(MasterKeyError, match=f"{path} is not base64.*restore the file from your backup"):
        keys.read_file(path)
