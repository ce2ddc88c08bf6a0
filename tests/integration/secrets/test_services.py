"""The secrets service on real databases (SQLite and PostgreSQL): set, list, delete, resolve.

Values are checked to be stored sealed (the ciphertext is what the table holds), bound to their
row (a ciphertext copied onto another secret does not open), and resolved with pipeline-scoped
over repository-scoped over tenant-wide precedence. Refused input changes nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from controller.errors import Invalid, NotFound, TooLarge, Unavailable
from controller.orgs.services import ensure_default_org_and_tenant
from controller.orgs.tables import Tenant
from controller.pipelines.tables import Pipeline
from controller.repos.tables import Repository
from controller.secrets import services
from controller.secrets.crypto import SecretBox, is_sealed
from controller.secrets.keys import MasterKey
from controller.secrets.sensitive import Sensitive
from controller.secrets.services import Scope, StoredSecrets
from controller.secrets.tables import Secret
from controller.secrets.unlock import unlock


@pytest.fixture
async def world(db: Any, tmp_path: Path) -> dict[str, Any]:
    """A tenant with a repository (and its pipeline) and a pipeline of its own; the master key."""
    org, tenant = await ensure_default_org_and_tenant()
    box = await unlock(tmp_path, None)
    repo_id = uuid.uuid4()
    await Repository.insert(
        Repository(
            id=repo_id, org=org, tenant=tenant, name="app", url="/srv/app", kind="local", webhook_secret=""
        )
    )
    repo_pipeline = Pipeline(org=org, tenant=tenant, name="app", config="", repository=repo_id)
    other = Pipeline(org=org, tenant=tenant, name="docs", config="")
    await Pipeline.insert(repo_pipeline, other)
    return {
        "org": org,
        "tenant": tenant,
        "box": box,
        "repo": repo_id,
        "repo_pipeline": repo_pipeline.id,
        "pipeline": other.id,
    }


async def _put(world: dict[str, Any], name: str, value: str, scope: Scope | None = None) -> bool:
    _, created = await services.put_secret(
        world["box"], world["org"], world["tenant"], name, Sensitive(value), scope or Scope(), "ada"
    )
    return created


async def test_set_list_update_delete_and_no_value_is_stored_or_listed(world: dict[str, Any]) -> None:
    assert await _put(world, "API_TOKEN", "v4lue-one") is True
    assert await _put(world, "API_TOKEN", "v4lue-two") is False  # same name and scope: a new value
    scope = await services.find_scope(world["tenant"], "app", None)
    assert await _put(world, "API_TOKEN", "v4lue-repo", scope) is True
    listed = [info.to_json() for info in await services.list_secrets(world["tenant"])]
    assert [(s["name"], s["scope"]) for s in listed] == [("API_TOKEN", "tenant"), ("API_TOKEN", "repository")]
    assert listed[1]["repository"] == {"id": str(world["repo"]), "name": "app"}
    assert all(s["updated_by"] == "ada" for s in listed)
    assert "v4lue" not in repr(listed)
    rows = await Secret.select(Secret.ciphertext)
    assert len(rows) == 2 and all(is_sealed(r["ciphertext"]) and "v4lue" not in r["ciphertext"] for r in rows)

    await services.delete_secret(world["tenant"], "API_TOKEN", Scope())
    with pytest.raises(NotFound) as gone:
        await services.delete_secret(world["tenant"], "API_TOKEN", Scope())
    assert "it exists for repository 'app'" in gone.value.message and "--repository" in gone.value.message
    assert [s.scope.kind for s in await services.list_secrets(world["tenant"])] == ["repository"]


async def test_resolution_prefers_pipeline_then_repository_then_tenant(world: dict[str, Any]) -> None:
    stored = StoredSecrets(world["box"])
    await _put(world, "A", "tenant-a")
    await _put(world, "B", "tenant-b")
    await _put(world, "C", "tenant-c")
    await _put(world, "B", "repo-b", await services.find_scope(world["tenant"], str(world["repo"]), None))
    await _put(world, "C", "repo-c", await services.find_scope(world["tenant"], "app", None))
    await _put(world, "C", "pipe-c", await services.find_scope(world["tenant"], None, "app"))
    await _put(world, "C", "docs-c", await services.find_scope(world["tenant"], None, str(world["pipeline"])))

    names = {"A", "B", "C", "NOPE"}
    assert await stored.available(world["repo_pipeline"], names) == {"A", "B", "C"}
    assert await stored.reveal(world["repo_pipeline"], names) == {
        "A": "tenant-a",
        "B": "repo-b",
        "C": "pipe-c",
    }
    assert await stored.reveal(world["pipeline"], names) == {"A": "tenant-a", "B": "tenant-b", "C": "docs-c"}
    assert await stored.reveal(uuid.uuid4(), names) == {}


async def test_another_tenants_secrets_are_never_resolved(world: dict[str, Any]) -> None:
    other = Tenant(org=world["org"], slug="other", name="Other")
    await other.save()
    await services.put_secret(world["box"], world["org"], other.id, "A", Sensitive("theirs"), Scope(), "eve")
    assert await StoredSecrets(world["box"]).reveal(world["pipeline"], {"A"}) == {}
    assert await services.list_secrets(world["tenant"]) == []
    with pytest.raises(NotFound):
        await services.find_scope(other.id, "app", None)  # app is not the other tenant's


async def test_a_ciphertext_copied_onto_another_secret_does_not_open(world: dict[str, Any]) -> None:
    await _put(world, "A", "value-of-a")
    await _put(world, "B", "value-of-b")
    a = await Secret.select(Secret.ciphertext).where(Secret.name == "A").first()
    assert a is not None
    await Secret.update({Secret.ciphertext: a["ciphertext"]}).where(Secret.name == "B")
    stored = StoredSecrets(world["box"])
    assert await stored.reveal(world["pipeline"], {"A"}) == {"A": "value-of-a"}
    with pytest.raises(Unavailable) as caught:
        await stored.reveal(world["pipeline"], {"B"})
    assert (
        "secret 'B' cannot be decrypted" in caught.value.message
        and "buildit secret set B" in caught.value.message
    )
    assert "value-of" not in caught.value.message


async def test_a_value_sealed_under_another_key_is_refused_not_garbled(world: dict[str, Any]) -> None:
    await _put(world, "A", "value")
    with pytest.raises(Unavailable):
        await StoredSecrets(SecretBox(MasterKey.generate())).reveal(world["pipeline"], {"A"})


@pytest.mark.parametrize(
    ("name", "value", "error", "says"),
    [
        ("1ABC", "x", Invalid, "secret name '1ABC' is not valid"),
        ("has-dash", "x", Invalid, "letters, digits and '_'"),
        ("A" * 129, "x", Invalid, "at most 128 characters"),
        ("OK", "", Invalid, "is empty"),
        ("OK", "a\0b", Invalid, "NUL"),
        ("OK", "x" * (64 * 1024 + 1), TooLarge, "at most 64 KiB"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    world: dict[str, Any], name: str, value: str, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as caught:
        await _put(world, name, value)
    assert says in str(caught.value)
    if value:
        assert value[:20] not in str(caught.value).replace(name, "")
    assert await Secret.count() == 0


async def test_a_value_of_exactly_64_kib_is_accepted(world: dict[str, Any]) -> None:
    value = "é" * (32 * 1024)  # 64 KiB of UTF-8
    await _put(world, "BIG", value)
    assert await StoredSecrets(world["box"]).reveal(world["pipeline"], {"BIG"}) == {"BIG": value}


async def test_scopes_are_found_by_id_or_name_and_both_at_once_is_refused(world: dict[str, Any]) -> None:
    tenant = world["tenant"]
    assert (await services.find_scope(tenant, None, None)).key == ""
    assert (await services.find_scope(tenant, "app", None)).key == f"repository:{world['repo']}"
    assert (await services.find_scope(tenant, None, "docs")).key == f"pipeline:{world['pipeline']}"
    assert (await services.find_scope(tenant, None, str(world["pipeline"]))).target_name == "docs"
    with pytest.raises(Invalid, match="not both"):
        await services.find_scope(tenant, "app", "docs")
    with pytest.raises(NotFound, match="no repository 'nope' in this tenant"):
        await services.find_scope(tenant, "nope", None)
    with pytest.raises(NotFound, match="no pipeline"):
        await services.find_scope(tenant, None, str(uuid.uuid4()))


async def test_deleting_a_repository_deletes_its_secrets(world: dict[str, Any]) -> None:
    await _put(world, "A", "x", await services.find_scope(world["tenant"], "app", None))
    await _put(world, "A", "y")
    await Pipeline.delete().where(Pipeline.repository == world["repo"])
    await Repository.delete().where(Repository.id == world["repo"])
    assert [s.scope.kind for s in await services.list_secrets(world["tenant"])] == ["tenant"]
