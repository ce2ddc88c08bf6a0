"""The role table: each tenant role holds its own permissions and every lower role's."""

from __future__ import annotations

import pytest

from controller.auth.passwords import check_strength, hash_password, needs_rehash, verify_password
from controller.auth.permissions import Permission, Role, role_allows
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
