"""Secrets of a tenant: set, list, delete, and resolve the values a stage's lease carries.

Every door (REST, and the CLI through it) goes through these functions. Rules:

- A name is `[A-Za-z_][A-Za-z0-9_]{0,127}` (what `${secrets.NAME}` accepts); a value is non-empty
  UTF-8 text of at most 64 KiB without NUL (a stage gets it as an environment variable).
- A secret is tenant-wide, or narrowed to one repository or one pipeline of the tenant; a stage
  resolves each name pipeline-scoped first, then repository-scoped, then tenant-wide.
- Values are write-only: stored sealed (controller.secrets.crypto, bound to the row's id, tenant,
  name and scope), returned by nothing here but `StoredSecrets.reveal`, which the scheduler calls
  to fill a lease. Messages name secrets, never values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from controller.db import is_unique_violation, write_transaction
from controller.errors import Invalid, NotFound, TooLarge, Unavailable
from controller.pipelines.tables import Pipeline
from controller.repos.tables import Repository
from controller.secrets import aad
from controller.secrets.crypto import SecretBox, Undecryptable
from controller.secrets.sensitive import Sensitive
from controller.secrets.tables import Secret

MAX_NAME = 128
MAX_VALUE_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
SET_HINT = "buildit secret set {name}"


@dataclass(frozen=True)
class Scope:
    """Where a secret applies: the whole tenant, one repository, or one pipeline (by id and name)."""

    repository: UUID | None = None
    pipeline: UUID | None = None
    #: The repository's or pipeline's name, for messages and listings.
    target_name: str = ""

    @property
    def key(self) -> str:
        """The stored `scope` column: "" (tenant-wide), `repository:<id>` or `pipeline:<id>`."""
        if self.pipeline is not None:
            return f"pipeline:{self.pipeline}"
        if self.repository is not None:
            return f"repository:{self.repository}"
        return ""

    @property
    def kind(self) -> str:
        """`tenant`, `repository` or `pipeline`."""
        return "pipeline" if self.pipeline else ("repository" if self.repository else "tenant")

    def describe(self) -> str:
        """The scope in words, for messages."""
        if self.kind == "tenant":
            return "tenant-wide"
        return f"for {self.kind} '{self.target_name}'"


@dataclass(frozen=True)
class SecretInfo:
    """What may be known about a secret: everything but its value."""

    name: str
    scope: Scope
    created_at: datetime
    updated_at: datetime
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        """The API view (no value: there is none to give)."""
        target = None
        if self.scope.kind != "tenant":
            target_id = self.scope.pipeline or self.scope.repository
            target = {"id": str(target_id), "name": self.scope.target_name}
        return {
            "name": self.name,
            "scope": self.scope.kind,
            "repository": target if self.scope.kind == "repository" else None,
            "pipeline": target if self.scope.kind == "pipeline" else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


def check_name(name: object) -> str:
    """A valid secret name, or Invalid saying what a name may be."""
    if not isinstance(name, str) or not _NAME.match(name):
        shown = repr(name)[:60] if isinstance(name, str) else type(name).__name__
        raise Invalid(
            f"secret name {shown} is not valid: use letters, digits and '_', not starting with a digit, "
            f"at most {MAX_NAME} characters (e.g. DEPLOY_TOKEN), as in ${{secrets.NAME}}"
        )
    return name


def check_value(value: Sensitive, name: str) -> None:
    """Refuse a value a stage could not receive (empty, NUL, too long); never quotes it."""
    text = value.reveal()
    if not isinstance(text, str) or not text:
        raise Invalid(f"the value of secret '{name}' is empty: give the value to store")
    if "\0" in text:
        raise Invalid(
            f"the value of secret '{name}' contains a NUL character, which no environment variable can "
            "hold: store binary data base64-encoded"
        )
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_VALUE_BYTES:
        raise TooLarge(
            f"the value of secret '{name}' is {size:,} bytes; at most {MAX_VALUE_BYTES // 1024} KiB "
            "(store a bigger file as an artifact or in a secret store, and its key here)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"the value of secret '{name}' is not valid Unicode text") from None


async def find_scope(tenant: UUID, repository: str | None, pipeline: str | None) -> Scope:
    """The scope named by a repository or a pipeline (id or name) of the tenant; tenant-wide for none."""
    repository = repository.strip() if isinstance(repository, str) and repository.strip() else None
    pipeline = pipeline.strip() if isinstance(pipeline, str) and pipeline.strip() else None
    if repository is not None and pipeline is not None:
        raise Invalid("narrow a secret to a repository or to a pipeline, not both")
    if repository is not None:
        row = await _by_id_or_name(Repository, tenant, repository)
        if row is None:
            raise NotFound(
                f"no repository {_shown(repository)} in this tenant; list them with `buildit repo list`"
            )
        return Scope(repository=row["id"], target_name=row["name"])
    if pipeline is not None:
        row = await _by_id_or_name(Pipeline, tenant, pipeline)
        if row is None:
            raise NotFound(
                f"no pipeline {_shown(pipeline)} in this tenant; list them with GET /api/v1/pipelines"
            )
        return Scope(pipeline=row["id"], target_name=row["name"])
    return Scope()


def _shown(ref: str) -> str:
    return repr(ref[:80])


async def _by_id_or_name(table: type[Repository] | type[Pipeline], tenant: UUID, ref: str) -> Any:
    try:
        as_id: UUID | None = UUID(ref)
    except ValueError:
        as_id = None
    where = table.name == ref if as_id is None else ((table.id == as_id) | (table.name == ref))
    return await table.select(table.id, table.name).where((table.tenant == tenant) & where).first()


async def put_secret(
    box: SecretBox,
    org: UUID,
    tenant: UUID,
    name: str,
    value: Sensitive,
    scope: Scope,
    actor: str,
) -> tuple[SecretInfo, bool]:
    """Store a secret (a new one, or a new value for the same name and scope); True when created.

    Why one transaction: the read and the write must see the same row, so two setters of one name
    end with one row; a concurrent first insert of the same name is retried as an update.
    """
    check_name(name)
    check_value(value, name)
    for attempt in (1, 2):
        try:
            return await _put(box, org, tenant, name, value, scope, actor)
        except Exception as exc:
            if attempt == 2 or not is_unique_violation(exc):
                raise
    raise AssertionError("unreachable")


async def _put(
    box: SecretBox, org: UUID, tenant: UUID, name: str, value: Sensitive, scope: Scope, actor: str
) -> tuple[SecretInfo, bool]:
    now = datetime.now(UTC)
    async with write_transaction():
        existing = (
            await Secret.select(Secret.id, Secret.created_at)
            .where((Secret.tenant == tenant) & (Secret.name == name) & (Secret.scope == scope.key))
            .first()
        )
        row_id = existing["id"] if existing else uuid.uuid4()
        sealed = box.seal(value.reveal(), aad.secret(row_id, tenant, name, scope.key))
        if existing:
            await Secret.update(
                {Secret.ciphertext: sealed, Secret.updated_at: now, Secret.updated_by: actor[:200]}
            ).where(Secret.id == row_id)
            created_at = _aware(existing["created_at"])
        else:
            await Secret.insert(
                Secret(
                    id=row_id,
                    org=org,
                    tenant=tenant,
                    name=name,
                    scope=scope.key,
                    repository=scope.repository,
                    pipeline=scope.pipeline,
                    ciphertext=sealed,
                    created_at=now,
                    updated_at=now,
                    updated_by=actor[:200],
                )
            )
            created_at = now
    return SecretInfo(name, scope, created_at, now, actor[:200]), existing is None


async def list_secrets(tenant: UUID) -> list[SecretInfo]:
    """The tenant's secrets by name (tenant-wide first, then narrower), without values."""
    rows = (
        await Secret.select(
            Secret.name,
            Secret.scope,
            Secret.repository,
            Secret.pipeline,
            Secret.repository.name.as_alias("repository_name"),
            Secret.pipeline.name.as_alias("pipeline_name"),
            Secret.created_at,
            Secret.updated_at,
            Secret.updated_by,
        )
        .where(Secret.tenant == tenant)
        .order_by(Secret.name)
        .order_by(Secret.scope)
    )
    return [
        SecretInfo(
            name=row["name"],
            scope=Scope(
                repository=row["repository"],
                pipeline=row["pipeline"],
                target_name=row["pipeline_name"] or row["repository_name"] or "",
            ),
            created_at=_aware(row["created_at"]),
            updated_at=_aware(row["updated_at"]),
            updated_by=row["updated_by"],
        )
        for row in rows
    ]


async def delete_secret(tenant: UUID, name: str, scope: Scope) -> None:
    """Delete one secret; NotFound (saying which ones exist by that name) when it is not there."""
    check_name(name)
    deleted = (
        await Secret.delete()
        .where((Secret.tenant == tenant) & (Secret.name == name) & (Secret.scope == scope.key))
        .returning(Secret.id)
    )
    if deleted:
        return
    others = [info for info in await list_secrets(tenant) if info.name == name]
    where = ", ".join(info.scope.describe() for info in others)
    also = f" (it exists {where}: pass --repository or --pipeline to pick one)" if others else ""
    raise NotFound(f"no secret '{name}' {scope.describe()}{also}")


class StoredSecrets:
    """The scheduler's `SecretSource` on the Secret table: what a stage's lease is filled from.

    A pipeline's secrets are those of its tenant: pipeline-scoped to it first, then scoped to its
    repository (a watched repository's pipeline), then tenant-wide.
    """

    def __init__(self, box: SecretBox) -> None:
        self.box = box
        #: Pipeline id -> (tenant, repository): neither changes for a pipeline's lifetime.
        self._owners: dict[UUID, tuple[UUID, UUID | None]] = {}

    async def available(self, pipeline_id: UUID, names: Collection[str]) -> frozenset[str]:
        """Which of `names` are set for the pipeline (checked when a run is planned)."""
        rows = await self._rows(pipeline_id, names, with_values=False)
        return frozenset(row["name"] for row in rows)

    async def reveal(self, pipeline_id: UUID, names: Collection[str]) -> Mapping[str, str]:
        """The values of `names` for the pipeline (absent names are not set); Unavailable when one
        does not decrypt. Called for a lease only; the values go nowhere else."""
        owner = await self._owner(pipeline_id)
        if owner is None:
            return {}
        tenant = owner[0]
        chosen: dict[str, dict[str, Any]] = {}
        for row in await self._rows(pipeline_id, names, with_values=True):
            best = chosen.get(row["name"])
            if best is None or _rank(row["scope"]) > _rank(best["scope"]):
                chosen[row["name"]] = row
        values: dict[str, str] = {}
        for name, row in chosen.items():
            try:
                values[name] = self.box.open(
                    row["ciphertext"], aad.secret(row["id"], tenant, name, row["scope"])
                )
            except Undecryptable:
                raise Unavailable(
                    f"secret '{name}' cannot be decrypted with the controller's master key (it was "
                    f"changed in the database, or stored under another key); set it again with "
                    f"`{SET_HINT.format(name=name)}`"
                ) from None
        return values

    async def _owner(self, pipeline_id: UUID) -> tuple[UUID, UUID | None] | None:
        owner = self._owners.get(pipeline_id)
        if owner is None:
            row = (
                await Pipeline.select(Pipeline.tenant, Pipeline.repository)
                .where(Pipeline.id == pipeline_id)
                .first()
            )
            if row is None:
                return None
            owner = (row["tenant"], row["repository"])
            self._owners[pipeline_id] = owner
        return owner

    async def _rows(
        self, pipeline_id: UUID, names: Collection[str], with_values: bool
    ) -> list[dict[str, Any]]:
        owner = await self._owner(pipeline_id)
        if owner is None or not names:
            return []
        tenant, repository = owner
        scopes = ["", f"pipeline:{pipeline_id}"]
        if repository is not None:
            scopes.append(f"repository:{repository}")
        columns = [Secret.id, Secret.name, Secret.scope]
        if with_values:
            columns.append(Secret.ciphertext)
        rows: list[dict[str, Any]] = await Secret.select(*columns).where(
            (Secret.tenant == tenant) & Secret.name.is_in(list(names)) & Secret.scope.is_in(scopes)
        )
        return rows


def _rank(scope: str) -> int:
    """Precedence of a stored scope: pipeline-scoped over repository-scoped over tenant-wide."""
    if scope.startswith("pipeline:"):
        return 2
    return 1 if scope.startswith("repository:") else 0


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
