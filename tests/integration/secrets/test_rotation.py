"""Rotating the master key on real databases: every value re-encrypted in one transaction, the old
key no longer opens anything, the files swapped, and an interrupted rotation finished by the next."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from controller.db import write_transaction
from controller.orgs.services import ensure_default_org_and_tenant
from controller.repos import services as repos
from controller.repos.tables import Repository
from controller.secrets import atrest, keycheck, keys
from controller.secrets.atrest import ResealFailed
from controller.secrets.crypto import SecretBox
from controller.secrets.keys import KEY_FILE, NEW_KEY_FILE, OLD_KEY_FILE, MasterKey, MasterKeyError
from controller.secrets.rotation import rotate
from controller.secrets.sensitive import Sensitive
from controller.secrets.services import Scope, StoredSecrets, put_secret
from controller.secrets.tables import Secret
from controller.secrets.unlock import unlock
from tests.integration.secrets.rows import legacy_repository


@pytest.fixture
async def filled(db: Any, tmp_path: Path) -> dict[str, Any]:
    """A database with secrets and a repository's webhook secret and token, under a key in tmp_path."""
    org, tenant = await ensure_default_org_and_tenant()
    repo_id = await legacy_repository(org, tenant, "hook-secret-0123456789", "ghp_token")
    box = await unlock(tmp_path, None)  # seals the repository's values too
    for name in ("A", "B"):
        await put_secret(box, org, tenant, name, Sensitive(f"value-of-{name}"), Scope(), "ada")
    pipeline = await repos.get_repository(tenant, repo_id, box)
    assert pipeline is not None
    return {"box": box, "tenant": tenant, "repo": repo_id, "pipeline": pipeline.pipeline_id}


async def _readable(box: SecretBox, filled: dict[str, Any]) -> bool:
    values = await StoredSecrets(box).reveal(filled["pipeline"], {"A", "B"})
    repo = await repos.get_repository(filled["tenant"], filled["repo"], box)
    return (
        values == {"A": "value-of-A", "B": "value-of-B"}
        and repo is not None
        and (repo.webhook_secret, repo.status_token) == ("hook-secret-0123456789", "ghp_token")
    )


async def test_rotation_re_encrypts_everything_and_the_old_key_stops_working(
    filled: dict[str, Any], tmp_path: Path
) -> None:
    old = filled["box"]
    before = {r["id"]: r["ciphertext"] for r in await Secret.select(Secret.id, Secret.ciphertext)}
    done = await rotate(tmp_path, None)
    assert done.resealed == 4 and done.old_key_id == old.key.key_id and not done.resumed
    new_key = keys.read_file(tmp_path / KEY_FILE)
    assert new_key is not None and new_key.key_id == done.new_key_id != old.key.key_id
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert not (tmp_path / NEW_KEY_FILE).exists() and not (tmp_path / OLD_KEY_FILE).exists()

    after = {r["id"]: r["ciphertext"] for r in await Secret.select(Secret.id, Secret.ciphertext)}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    new = await unlock(tmp_path, None)
    assert await _readable(new, filled)
    # The old key opens nothing any more, and a controller given it refuses to start.
    with pytest.raises(MasterKeyError, match="does not match"):
        await unlock(tmp_path, old.key)
    repo = await repos.get_repository(filled["tenant"], filled["repo"], old)
    assert repo is not None and repo.webhook_secret == ""


async def test_a_given_new_key_is_used(filled: dict[str, Any], tmp_path: Path) -> None:
    chosen = MasterKey.generate()
    done = await rotate(tmp_path, None, chosen)
    assert done.new_key_id == chosen.key_id and keys.read_file(tmp_path / KEY_FILE) == chosen
    with pytest.raises(MasterKeyError, match="the new key is the current key"):
        await rotate(tmp_path, None, chosen)


async def test_a_key_from_the_environment_leaves_the_new_key_for_the_operator(
    db: Any, tmp_path: Path
) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    configured = MasterKey.generate()
    box = await unlock(tmp_path, configured)
    await put_secret(box, org, tenant, "A", Sensitive("v"), Scope(), "ada")
    done = await rotate(tmp_path, configured)
    assert done.from_env and done.key_path == tmp_path / NEW_KEY_FILE
    assert not (tmp_path / KEY_FILE).exists()
    new_key = keys.read_file(tmp_path / NEW_KEY_FILE)
    assert new_key is not None and (await unlock(tmp_path, new_key)).key == new_key
    with pytest.raises(MasterKeyError) as caught:
        await unlock(tmp_path, configured)
    assert f"The database's key is in {tmp_path / NEW_KEY_FILE}" in str(caught.value)


async def test_an_interrupted_rotation_is_finished_by_the_next_one(
    filled: dict[str, Any], tmp_path: Path
) -> None:
    # As if the process died after the commit, before swapping the files.
    new_key = MasterKey.generate()
    keys.write_file(tmp_path / NEW_KEY_FILE, new_key, replace=True)
    async with write_transaction():
        await atrest.reseal(filled["box"], SecretBox(new_key))
        await keycheck.replace(SecretBox(new_key))
    with pytest.raises(MasterKeyError):
        await unlock(tmp_path, None)
    done = await rotate(tmp_path, None)
    assert done.resumed and done.new_key_id == new_key.key_id and done.resealed == 0
    assert keys.read_file(tmp_path / KEY_FILE) == new_key and not (tmp_path / NEW_KEY_FILE).exists()
    assert await _readable(await unlock(tmp_path, None), filled)


async def test_a_value_that_does_not_open_aborts_the_rotation_and_changes_nothing(
    filled: dict[str, Any], tmp_path: Path
) -> None:
    stranger = SecretBox(MasterKey.generate()).seal("x", b"nowhere")
    await Repository.update({Repository.status_token: stranger}).where(Repository.id == filled["repo"])
    old_key = keys.read_file(tmp_path / KEY_FILE)
    before = await Secret.select(Secret.id, Secret.ciphertext)
    with pytest.raises(ResealFailed, match="commit-status token of repository"):
        await rotate(tmp_path, None)
    assert await Secret.select(Secret.id, Secret.ciphertext) == before
    assert keys.read_file(tmp_path / KEY_FILE) == old_key
    assert (await keycheck.load()) is not None and (await unlock(tmp_path, None)).key == old_key


async def test_rotating_with_the_wrong_key_or_none_is_refused(filled: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="is not this database's master key"):
        await rotate(tmp_path, MasterKey.generate())
    (tmp_path / KEY_FILE).rename(tmp_path / "elsewhere")
    with pytest.raises(MasterKeyError, match="no master key to rotate from"):
        await rotate(tmp_path, None)
