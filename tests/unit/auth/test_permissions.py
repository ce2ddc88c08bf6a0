"""The role table: each tenant role holds its own permissions and every lower role's."""

from __future__ import annotations

from uuid import uuid4

import pytest

from controller.auth.caller import Caller
from controller.auth.passwords import check_strength, hash_password, needs_rehash, verify_password
from controller.auth.permissions import OrgRole, Permission, Role, role_allows
from controller.auth.policy import allows
from controller.errors import Invalid

EXPECTED = {
    Role.VIEWER: {Permission.READ},
    Role.DEVELOPER: {Permission.READ, Permission.RUN},
    Role.MAINTAINER: {Permission.READ, Permission.RUN, Permission.MANAGE},
    Role.ADMIN: {Permission.READ, Permission.RUN, Permission.MANAGE, Permission.ADMIN},
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_holds_exactly_its_permissions(role: Role) -> None:
    tenant_permissions = [Permission.READ, Permission.RUN, Permission.MANAGE, Permission.ADMIN]
    assert {p for p in tenant_permissions if role_allows(role, p)} == EXPECTED[role]


def test_no_role_holds_nothing_and_open_permissions_are_not_tenant_roles() -> None:
    assert not role_allows(None, Permission.READ)
    assert not role_allows(Role.ADMIN, Permission.ORG_ADMIN)  # org roles are checked apart


def test_roles_parse_by_name_with_a_clear_error() -> None:
    assert Role.parse(" Maintainer ") is Role.MAINTAINER
    with pytest.raises(ValueError, match="viewer, developer, maintainer, admin"):
        Role.parse("owner")


def test_passwords_are_argon2id_and_checked() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterx")
    assert not verify_password("", "anything")  # no such user: a dummy hash is checked, never true
    assert not needs_rehash(stored)
    with pytest.raises(Invalid, match="at least 12"):
        check_strength("short")


def test_what_pages_hide_follows_the_policy_points_rule() -> None:
    tenant = uuid4()
    viewer = Caller("user", "vera", uuid4(), tenant, Role.VIEWER, user_id=uuid4())
    assert allows(viewer, Permission.READ) and allows(viewer, Permission.AUTHENTICATED)
    assert not allows(viewer, Permission.RUN) and not allows(viewer, Permission.ORG_ADMIN)
    owner = Caller("user", "admin", uuid4(), tenant, Role.ADMIN, org_role=int(OrgRole.OWNER))
    assert all(allows(owner, p) for p in (Permission.MANAGE, Permission.ADMIN, Permission.ORG_ADMIN))
    anonymous = Caller("anonymous", "anonymous", uuid4(), tenant, None)
    assert allows(anonymous, Permission.PUBLIC) and not allows(anonymous, Permission.AUTHENTICATED)
    assert allows(None, Permission.PUBLIC) and not allows(None, Permission.READ)
