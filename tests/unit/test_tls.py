"""controller.tls and the gRPC TLS settings: the certificate and key are checked at start, by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from controller.settings import ControllerSettings
from controller.tls import read_tls_files
from tests.tlscerts import Issued, make_ca, make_server_cert


@pytest.fixture
def pair(tmp_path: Path) -> Issued:
    return make_server_cert(tmp_path, make_ca(tmp_path))


def test_a_good_pair_is_read_as_pem_bytes(pair: Issued) -> None:
    files = read_tls_files(pair.cert, pair.key)
    assert files.cert_pem == pair.cert.read_bytes() and files.key_pem == pair.key.read_bytes()


def test_an_unreadable_file_is_named(pair: Issued, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=rf"cannot read {missing} \(--grpc-tls-cert\)"):
        read_tls_files(missing, pair.key)
    with pytest.raises(ValueError, match=rf"cannot read {missing} \(--grpc-tls-key\)"):
        read_tls_files(pair.cert, missing)


def test_a_file_that_is_not_pem_is_named(pair: Issued, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(ValueError, match=rf"certificate {junk} \(--grpc-tls-cert\) holds no PEM certificate"):
        read_tls_files(junk, pair.key)
    with pytest.raises(ValueError, match=rf"key {junk} \(--grpc-tls-key\) holds no PEM private key"):
        read_tls_files(pair.cert, junk)


def test_a_damaged_certificate_is_named(pair: Issued, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=rf"{broken} \(--grpc-tls-cert\) is not a valid PEM certificate"):
        read_tls_files(broken, pair.key)


def test_a_key_of_another_certificate_is_refused(pair: Issued, tmp_path: Path) -> None:
    other = make_server_cert(tmp_path / "other", None)
    with pytest.raises(ValueError, match=rf"{other.key} \(--grpc-tls-key\) is not the private key"):
        read_tls_files(pair.cert, other.key)


def test_an_encrypted_key_is_refused_with_how_to_decrypt_it(pair: Issued, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        pair.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match="is encrypted; give the controller an unencrypted key"):
        read_tls_files(pair.cert, encrypted)


# --- settings: both or neither, flags over environment ----------------------------------------


def test_settings_take_both_files_from_flags_or_environment(
    pair: Issued, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDIT_REGISTRATION_TOKEN", "t")
    plain = ControllerSettings.from_env(data_dir=str(tmp_path / "d"))
    assert plain.grpc_tls_cert is None and plain.grpc_tls_key is None
    flagged = ControllerSettings.from_env(
        data_dir=str(tmp_path / "d"), grpc_tls_cert=str(pair.cert), grpc_tls_key=str(pair.key)
    )
    assert (flagged.grpc_tls_cert, flagged.grpc_tls_key) == (pair.cert, pair.key)
    monkeypatch.setenv("BUILDIT_GRPC_TLS_CERT", str(pair.cert))
    monkeypatch.setenv("BUILDIT_GRPC_TLS_KEY", str(pair.key))
    from_env = ControllerSettings.from_env(data_dir=str(tmp_path / "d"))
    assert (from_env.grpc_tls_cert, from_env.grpc_tls_key) == (pair.cert, pair.key)


@pytest.mark.parametrize("given", ["cert", "key"])
def test_one_file_without_the_other_is_a_clear_error(
    given: str, pair: Issued, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDIT_REGISTRATION_TOKEN", "t")
    kw = {"grpc_tls_cert": str(pair.cert)} if given == "cert" else {"grpc_tls_key": str(pair.key)}
    missing = "--grpc-tls-key" if given == "cert" else "--grpc-tls-cert"
    with pytest.raises(ValueError, match=f"needs {missing} too"):
        ControllerSettings.from_env(data_dir=str(tmp_path / "d"), **kw)


def test_a_bad_file_stops_the_settings_naming_it(
    pair: Issued, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDIT_REGISTRATION_TOKEN", "t")
    monkeypatch.setenv("BUILDIT_GRPC_TLS_CERT", str(pair.cert))
    monkeypatch.setenv("BUILDIT_GRPC_TLS_KEY", str(tmp_path / "absent.key"))
    with pytest.raises(ValueError, match=r"absent\.key"):
        ControllerSettings.from_env(data_dir=str(tmp_path / "d"))
