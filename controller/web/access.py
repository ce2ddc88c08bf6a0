"""What the signed-in caller may do, for templates: `can("run")` hides buttons a role cannot use.

The caller is the one the policy point left in the request's scope; the rule is the policy
point's own (`controller.auth.policy.allows`), so a page never shows an action the server would
refuse, nor hides one it would allow. Hiding is only a courtesy: every action is checked again
when its REST request arrives.
"""

from __future__ import annotations

from typing import Any

from controller.auth.caller import Caller
from controller.auth.permissions import Permission
from controller.auth.policy import STATE_KEY, allows


def request_caller(request: Any) -> Caller | None:
    """The caller of a page request (None outside a request, e.g. a template rendered in a test)."""
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    caller = scope.get("state", {}).get(STATE_KEY)
    return caller if isinstance(caller, Caller) else None


def can(request: Any, permission: str | Permission) -> bool:
    """Whether the page's caller holds `permission` (a Permission or its value, e.g. "manage")."""
    return allows(request_caller(request), Permission(permission))
