"""Organization and Tenant: the two levels of ownership every BuildIt row carries.

They exist from day one (with one "default" of each, see services.py) so that multi-tenancy later
is a feature, not a migration of every table.
"""

from __future__ import annotations

from piccolo.columns import UUID, ForeignKey, OnDelete, Timestamptz, Varchar
from piccolo.table import Table


class Organization(Table):
    """A customer account; owns tenants. `slug` is the stable, URL-safe handle."""

    id = UUID(primary_key=True)
    slug = Varchar(length=63, unique=True)
    name = Varchar(length=200)
    created_at = Timestamptz()


class Tenant(Table):
    """A workspace inside an organization: pipelines, runs and agents are scoped to one."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    slug = Varchar(length=63)
    name = Varchar(length=200)
    created_at = Timestamptz()

    # A slug names one tenant per organization; it also makes creating the default tenant
    # race-free (INSERT ... ON CONFLICT DO NOTHING needs a unique key to conflict on).
    # Unique (org, slug): index tenant_org_slug_unique, made by a hand-written migration (Piccolo's
    # Unique() constraint is an ALTER TABLE ... ADD CONSTRAINT, which SQLite does not have).
