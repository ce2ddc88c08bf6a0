"""Credentials: web sessions, API keys and agent registration tokens (users are in controller.orgs).

Credentials are stored only as hashes: a password as argon2id (`password_hash`), a session
cookie, an API key and a registration token as SHA-256 of the random value (they carry 256 bits
of entropy, so a fast hash is enough and keeps the per-request check cheap). A leaked database
holds no usable credential.
"""

from __future__ import annotations

from piccolo.columns import JSON, UUID, Boolean, ForeignKey, Integer, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant, User


class WebSession(Table):
    """A signed-in browser: revocable, expires after idle time; `id_hash` is SHA-256 of the cookie."""

    id = UUID(primary_key=True)
    id_hash = Varchar(length=64, unique=True)
    user = ForeignKey(references=User, null=False, on_delete=OnDelete.cascade)
    #: The tenant the user switched to (None: the default choice).
    tenant = ForeignKey(references=Tenant, null=True, default=None, on_delete=OnDelete.set_null)
    csrf_token = Varchar(length=64)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    address = Varchar(length=64, default="")
    revoked = Boolean(default=False)


class ApiKey(Table):
    """An API key: personal (`user` set: never more than the user's roles; `tenant` optionally narrows
    it to one tenant) or a service key (`user` empty: one `tenant` with an explicit `role`).

    The key itself is shown once; `prefix` (the first characters after `bk_`) lets people recognise it.
    """

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=True, default=None, on_delete=OnDelete.cascade)
    user = ForeignKey(references=User, null=True, default=None, on_delete=OnDelete.cascade)
    #: A service key's tenant role; a personal key's ceiling (0: the user's own roles).
    role = Integer(default=0)
    name = Varchar(length=100)
    prefix = Varchar(length=16)
    key_hash = Varchar(length=64, unique=True)
    created_by = Varchar(length=100, default="")
    created_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class AgentToken(Table):
    """A registration token agents enrol with: of one tenant, or of the whole org (`tenant` empty)."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=True, default=None, on_delete=OnDelete.cascade)
    name = Varchar(length=100)
    prefix = Varchar(length=16)
    token_hash = Varchar(length=64, unique=True)
    created_by = Varchar(length=100, default="")
    created_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    #: Extra data (e.g. {"source": "settings"} for the token carried over from `.buildit/`).
    meta = JSON(default={})
