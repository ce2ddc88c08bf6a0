"""Organization and Tenant: the two levels of ownership every BuildIt row carries.

They exist from day one (with one "default" of each, see services.py) so that multi-tenancy later
is a feature, not a migration of every table.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
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


class User(Table, tablename="account"):
    """A person. `username` is the login name (unique, case-folded); OIDC users also carry issuer+subject."""

    id = UUID(primary_key=True)
    username = Varchar(length=64, unique=True)
    display_name = Varchar(length=200, default="")
    email = Varchar(length=320, default="")
    #: argon2id hash; empty for users who sign in only through OIDC.
    password_hash = Text(default="")
    oidc_issuer = Text(default="")
    oidc_subject = Varchar(length=255, default="")
    disabled = Boolean(default=False)
    created_at = Timestamptz()
    last_login_at = Timestamptz(null=True, default=None)


class Membership(Table):
    """A user's membership of an organization; `role` is an OrgRole (member 1, admin 2, owner 3)."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    user = ForeignKey(references=User, null=False, on_delete=OnDelete.cascade)
    role = Integer(default=1)
    created_at = Timestamptz()


class Team(Table):
    """A named set of members of one organization; grants given to a team reach its members."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=100)
    created_at = Timestamptz()


class TeamMember(Table):
    """One user in one team."""

    id = UUID(primary_key=True)
    team = ForeignKey(references=Team, null=False, on_delete=OnDelete.cascade)
    user = ForeignKey(references=User, null=False, on_delete=OnDelete.cascade)


class TenantGrant(Table):
    """A tenant role (Role: viewer 1 … admin 4) given to a user or to a team (exactly one is set)."""

    id = UUID(primary_key=True)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    user = ForeignKey(references=User, null=True, default=None, on_delete=OnDelete.cascade)
    team = ForeignKey(references=Team, null=True, default=None, on_delete=OnDelete.cascade)
    role = Integer(default=1)
    created_at = Timestamptz()
