"""Who is calling, as the policy point established it: what every door hands to operations."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from controller.auth.permissions import Role

CallerKind = Literal["anonymous", "user", "key", "agent", "webhook"]


class TenantChoice:
    """A tenant the caller may switch to."""

    __slots__ = ("id", "path", "role")

    def __init__(self, id: UUID, path: str, role: Role) -> None:
        self.id = id
        self.path = path
        self.role = role


class Caller:
    """An authenticated (or anonymous) caller acting in one tenant.

    A plain class, not a dataclass: Litestar validates injected values with msgspec, which would
    rebuild a dataclass per request (see `controller.deps.Deps`).
    """

    __slots__ = (
        "address",
        "agent_id",
        "key_id",
        "kind",
        "name",
        "org",
        "org_role",
        "role",
        "roles",
        "tenant",
        "tenant_list",
        "user_id",
    )

    def __init__(
        self,
        kind: CallerKind,
        name: str,
        org: UUID,
        tenant: UUID,
        role: Role | None,
        *,
        user_id: UUID | None = None,
        key_id: UUID | None = None,
        roles: dict[UUID, Role] | None = None,
        org_role: int | None = None,
        address: str = "",
        agent_id: UUID | None = None,
    ) -> None:
        self.kind: CallerKind = kind
        #: Shown in the audit log and in messages: a user name, `key:<prefix>`, `agent:<name>`.
        self.name = name
        self.org = org
        #: The tenant this request acts in; operations scope every query to it.
        self.tenant = tenant
        #: The caller's role in `tenant` (None: anonymous, or an agent).
        self.role = role
        self.user_id = user_id
        self.key_id = key_id
        #: Every tenant the caller can see, with its role there (the tenant switcher's list).
        self.roles: dict[UUID, Role] = roles if roles is not None else ({tenant: role} if role else {})
        self.org_role = org_role
        #: The client's address, for the audit log and login rate limits.
        self.address = address
        #: The agent calling with its own token (kind "agent"): what it may read is what it holds.
        self.agent_id = agent_id
        #: The tenants of `roles` as `TenantChoice`s, by path (the UI's tenant switcher).
        self.tenant_list: list[TenantChoice] = []

    @property
    def is_org_admin(self) -> bool:
        """An owner or admin of the organization it acts in."""
        return self.org_role is not None and self.org_role >= 2

    def __repr__(self) -> str:
        return f"Caller({self.kind} {self.name!r} tenant={self.tenant} role={self.role})"
