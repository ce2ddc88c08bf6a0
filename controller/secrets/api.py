"""REST: /api/v1/secrets — set, list and delete the secrets of the caller's tenant (values write-only).

`PUT /api/v1/secrets/{name}` with `{"value": "...", "repository": null|"id or name",
"pipeline": null|"id or name"}` answers 201 (created) or 200 (a new value); `GET /api/v1/secrets`
lists names, scopes and who changed them when; `DELETE /api/v1/secrets/{name}` (with
`?repository=` or `?pipeline=` to pick a narrowed one) answers 204, or 404. No answer ever holds
a value: there is no way to read one back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Invalid, Unavailable
from controller.secrets import services
from controller.secrets.crypto import SecretBox
from controller.secrets.sensitive import Sensitive


@dataclass
class SetSecret:
    """Body of PUT /api/v1/secrets/{name}. The value is never shown (not even in a repr)."""

    value: str = field(repr=False)
    #: Narrow the secret to one repository of the tenant (id or name).
    repository: str | None = None
    #: Narrow the secret to one pipeline of the tenant (id or name).
    pipeline: str | None = None


def _box(deps: Deps) -> SecretBox:
    if deps.secret_box is None:
        raise Unavailable("secrets are not available: this controller was started without a master key")
    return deps.secret_box


class SecretsController(Controller):
    """Secrets of the caller's tenant; managing them needs the `manage` permission (maintainer)."""

    path = "/api/v1/secrets"
    tags = ["secrets"]
    opt = requires(Permission.MANAGE)

    @get("/")
    async def list_secrets(self, caller: NamedDependency[Caller]) -> dict[str, Any]:
        """Every secret of the tenant: name, scope, when and by whom it was last set; never a value."""
        return {"secrets": [info.to_json() for info in await services.list_secrets(caller.tenant)]}

    @put("/{name:str}")
    async def set_secret(
        self,
        deps: NamedDependency[Deps],
        caller: NamedDependency[Caller],
        name: FromPath[str],
        data: JSONBody[SetSecret],
    ) -> Response[dict[str, Any]]:
        """Set a secret: 201 when it is new, 200 when it replaces the value of the same name and scope."""
        services.check_name(name)
        if not isinstance(data.value, str):
            raise Invalid(f"'value' of secret '{name}' must be a string")
        value = Sensitive(data.value)
        services.check_value(value, name)
        scope = await services.find_scope(caller.tenant, data.repository, data.pipeline)
        info, created = await services.put_secret(
            _box(deps), caller.org, caller.tenant, name, value, scope, caller.name
        )
        await audit.record("secret.create" if created else "secret.update", name, caller=caller)
        return Response(info.to_json(), status_code=201 if created else 200)

    @delete("/{name:str}", status_code=204)
    async def delete_secret(
        self,
        caller: NamedDependency[Caller],
        name: FromPath[str],
        repository: FromQuery[str | None] = None,
        pipeline: FromQuery[str | None] = None,
    ) -> None:
        """Delete a secret: tenant-wide, or the one of `?repository=` / `?pipeline=` (404 if absent)."""
        services.check_name(name)
        scope = await services.find_scope(caller.tenant, repository, pipeline)
        await services.delete_secret(caller.tenant, name, scope)
        await audit.record("secret.delete", name, caller=caller)
