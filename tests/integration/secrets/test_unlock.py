"""Opening the master key at start, on real databases: generated once, checked every time, and the
plain-text webhook secrets and status tokens of an older installation sealed (once, all or none)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from controller.hooks.verify import verify_bearer
from controller.orgs.services import ensure_default_org_and_tenant
from controller.repos import services as repos
from controller.repos.tables import Repository
from controller.secrets import atrest, keycheck
from controller.secrets.crypto import SecretBox, is_sealed
from controller.secrets.keys import KEY_FILE, NEW_KEY_FILE, MasterKey, MasterKeyError
from controller.secrets.sensitive import Sensitive
from controller.secrets.services import Scope, put_secret
from controller.secrets.tables import SecretKeyCheck
from controller.secrets.unlock import unlock
from tests.integration.secrets.rows import legacy_repository


async def test_the_first_start_makes_a_0600_key_and_later_starts_use_it(db: Any, tmp_path: Path) -> None:
    box = await unlock(tmp_path, None)
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = await keycheck.load()
    assert stored is not None and stored.key_id == box.key.key_id
    again = await unlock(tmp_path, None)
    assert again.key == box.key
    assert await SecretKeyCheck.count() == 1


async def test_a_configured_key_is_used_and_no_file_is_written(db: Any, tmp_path: Path) -> None:
    key = MasterKey.generate()
    box = await unlock(tmp_path, key)
    assert box.key == key and not (tmp_path / KEY_FILE).exists()


async def test_a_wrong_key_stops_the_start_with_the_message_and_changes_nothing(
    db: Any, tmp_path: Path
) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    box = await unlock(tmp_path, None)
    await put_secret(box, org, tenant, "A", Sensitive("value"), Scope(), "ada")
    before = await keycheck.load()

    wrong = MasterKey.generate()
    with pytest.raises(MasterKeyError) as from_env:
        await unlock(tmp_path, wrong)
    message = str(from_env.value)
    assert message.startswith("the master key does not match the one this database was encrypted with")
    assert f"the database needs key {box.key.key_id}" in message and "BUILDIT_SECRET_KEY" in message
    assert wrong.text() not in message and box.key.text() not in message

    (tmp_path / KEY_FILE).write_text(wrong.text())
    with pytest.raises(MasterKeyError) as from_file:
        await unlock(tmp_path, None)
    assert f"restore {tmp_path / KEY_FILE} from your backup" in str(from_file.value)
    assert await keycheck.load() == before


async def test_a_missing_key_with_encrypted_data_stops_the_start_and_generates_nothing(
    db: Any, tmp_path: Path
) -> None:
    await unlock(tmp_path, None)
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(MasterKeyError) as caught:
        await unlock(tmp_path, None)
    assert "there is no key" in str(caught.value) and f"restore {tmp_path / KEY_FILE}" in str(caught.value)
    assert not (tmp_path / KEY_FILE).exists()


async def test_encrypted_values_without_a_key_check_are_not_given_a_new_key(db: Any, tmp_path: Path) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    box = await unlock(tmp_path, None)
    await put_secret(box, org, tenant, "A", Sensitive("value"), Scope(), "ada")
    await SecretKeyCheck.delete(force=True)
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(MasterKeyError, match="no record of their master key"):
        await unlock(tmp_path, None)
    assert not (tmp_path / KEY_FILE).exists()


async def test_an_interrupted_rotation_is_named_in_the_message(db: Any, tmp_path: Path) -> None:
    old = await unlock(tmp_path, None)
    new = SecretBox(MasterKey.generate())
    (tmp_path / NEW_KEY_FILE).write_text(new.key.text())
    await keycheck.replace(new)  # the database was re-encrypted, the files were not swapped
    with pytest.raises(MasterKeyError) as caught:
        await unlock(tmp_path, old.key)
    assert f"The database's key is in {tmp_path / NEW_KEY_FILE}" in str(caught.value)
    assert "buildit admin rotate-key" in str(caught.value)


async def test_plain_text_webhook_secrets_and_tokens_are_sealed_once_and_still_work(
    db: Any, tmp_path: Path
) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    hooked = await legacy_repository(org, tenant, "plain-hook-secret-0123", "ghp_plainToken")
    bare = await legacy_repository(org, tenant, "another-hook-secret-45", "")

    box = await unlock(tmp_path, None)
    rows = {
        r["id"]: r
        for r in await Repository.select(Repository.id, Repository.webhook_secret, Repository.status_token)
    }
    assert is_sealed(rows[hooked]["webhook_secret"]) and is_sealed(rows[hooked]["status_token"])
    assert is_sealed(rows[bare]["webhook_secret"]) and rows[bare]["status_token"] == ""
    assert "plain" not in repr(rows) and "ghp_" not in repr(rows)

    # Everything that uses them reads them back: the webhook check, the status reporter's token.
    repo = await repos.get_repository(tenant, hooked, box)
    assert repo is not None and repo.status_token == "ghp_plainToken"
    assert verify_bearer(repo.webhook_secret, "Bearer plain-hook-secret-0123")
    assert "plain-hook" not in repr(repo) and "ghp_" not in repr(repo)

    # Idempotent: a second start (and a direct second pass) seals nothing more and changes nothing.
    await unlock(tmp_path, None)
    assert await atrest.seal_plaintext(box) == 0
    again = {
        r["id"]: r
        for r in await Repository.select(Repository.id, Repository.webhook_secret, Repository.status_token)
    }
    assert again == rows


async def test_a_sealed_repository_value_that_does_not_open_reads_as_empty(db: Any, tmp_path: Path) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    box = await unlock(tmp_path, None)
    repo_id = await legacy_repository(org, tenant, "", "")
    stranger = SecretBox(MasterKey.generate()).seal("x" * 20, b"elsewhere")
    await Repository.update({Repository.webhook_secret: stranger}).where(Repository.id == repo_id)
    repo = await repos.get_repository(tenant, repo_id, box)
    assert repo is not None and repo.webhook_secret == ""
    assert not verify_bearer(repo.webhook_secret, "Bearer " + "x" * 20)


def test_a_key_from_the_environment_reaches_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from controller.settings import ControllerSettings

    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("BUILDIT_SECRET_KEY", key)
    settings = ControllerSettings.from_env(data_dir=str(tmp_path))
    assert settings.secret_key is not None and settings.secret_key.text() == key
    assert key not in repr(settings)
    monkeypatch.setenv("BUILDIT_SECRET_KEY", "too-short")
    with pytest.raises(ValueError, match="BUILDIT_SECRET_KEY"):
        ControllerSettings.from_env(data_dir=str(tmp_path))
