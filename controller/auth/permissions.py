"""What a caller may do: permissions, tenant roles, and which role grants which permission.

One table (`ROLE_PERMISSIONS`) is the whole policy; doors only *declare* the permission an
operation needs (`requires(...)` on a Litestar handler, `METHOD_PERMISSIONS` for gRPC).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class Permission(StrEnum):
    """The permission a route, page, socket topic or gRPC method needs."""

    #: Anyone, without a credential: health, OpenAPI, login pages, static files.
    PUBLIC = "public"
    #: A forge webhook: authenticated by its signature, not by a user.
    WEBHOOK = "webhook"
    #: Any signed-in user or API key, whatever its tenant role (own profile, own keys, tenant list).
    AUTHENTICATED = "authenticated"
    #: An agent's credential: AgentService, and the Git/artifact routes of the stages it holds.
    AGENT = "agent"
    #: viewer: see pipelines, runs, logs, artifacts, agents of the tenant.
    READ = "read"
    #: developer: trigger, cancel, retry, re-run.
    RUN = "run"
    #: maintainer: pipelines, repositories, secrets, agent tokens, draining agents.
    MANAGE = "manage"
    #: admin: grants of the tenant; the audit log.
    ADMIN = "admin"
    #: organization owner/admin: members, teams, tenants of the organization.
    ORG_ADMIN = "org_admin"


class Role(IntEnum):
    """A tenant role; each includes every lower one."""

    VIEWER = 1
    DEVELOPER = 2
    MAINTAINER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        """The role's name in the API and the UI (`viewer`, `developer`, …)."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role from its name; ValueError naming the four roles otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {text!r}: use one of viewer, developer, maintainer, admin"
            ) from None


class OrgRole(IntEnum):
    """A membership's role in an organization; owner and admin are tenant admin everywhere in it."""

    MEMBER = 1
    ADMIN = 2
    OWNER = 3

    @property
    def label(self) -> str:
        """The org role's name in the API and the UI."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> OrgRole:
        """An org role from its name; ValueError naming the three otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown organization role {text!r}: use one of owner, admin, member") from None


#: The lowest tenant role that holds each tenant permission.
MIN_ROLE: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.RUN: Role.DEVELOPER,
    Permission.MANAGE: Role.MAINTAINER,
    Permission.ADMIN: Role.ADMIN,
}

OPT_KEY = "permission"


def requires(permission: Permission) -> dict[str, Any]:
    """The `opt` of a Litestar handler or controller that needs `permission` (read by the policy point)."""
    return {OPT_KEY: permission}


def role_allows(role: Role | None, permission: Permission) -> bool:
    """Whether a tenant role holds a tenant permission (READ, RUN, MANAGE, ADMIN)."""
    needed = MIN_ROLE.get(permission)
    return needed is not None and role is not None and role >= needed
