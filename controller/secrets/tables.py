"""Secret and SecretKeyCheck: encrypted values for pipelines, and the proof of which key encrypts them.

- `Secret`: one named value of a tenant, optionally narrowed to one repository or one pipeline.
  `ciphertext` is sealed under the master key and bound (associated data) to the row's id,
  tenant, name and scope; the value itself is never stored. `scope` spells the narrowing as one
  comparable key (`""` tenant-wide, `repository:<id>`, `pipeline:<id>`) so (tenant, name, scope)
  can be unique (nullable foreign keys in a unique index would not be: NULLs never collide).
- `SecretKeyCheck`: one row (`name` "master"): a known constant sealed under the master key, with
  the key's fingerprint. A controller whose key does not open it refuses to start.
"""

from __future__ import annotations

from piccolo.columns import UUID, ForeignKey, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant
from controller.pipelines.tables import Pipeline
from controller.repos.tables import Repository


class Secret(Table):
    """A secret of a tenant (see the module docstring). Deleting its repository or pipeline deletes it."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=128)
    scope = Varchar(length=64, default="")
    repository = ForeignKey(references=Repository, null=True, default=None, on_delete=OnDelete.cascade)
    pipeline = ForeignKey(references=Pipeline, null=True, default=None, on_delete=OnDelete.cascade)
    ciphertext = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()
    updated_by = Varchar(length=200, default="")

    # Unique (tenant, name, scope): index secret_tenant_name_scope_unique (hand-written migration).


class SecretKeyCheck(Table):
    """Which master key the database's sealed values are under (see the module docstring)."""

    id = UUID(primary_key=True)
    name = Varchar(length=32, unique=True)
    key_id = Varchar(length=32)
    check_value = Text()
    created_at = Timestamptz()
    rotated_at = Timestamptz(null=True, default=None)
