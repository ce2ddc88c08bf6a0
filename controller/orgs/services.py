"""Organization and tenant operations.

Until multi-tenancy is a feature, everything belongs to one organization and one tenant, both
with the slug "default". Every controller start ensures they exist; several controllers may start
at once against one PostgreSQL, so creation is `INSERT ... ON CONFLICT DO NOTHING` on the unique
slug keys followed by a read: whoever wins the race, everybody reads the same two rows.
"""

from __future__ import annotations

from uuid import UUID

from controller.orgs.tables import Organization, Tenant

DEFAULT_SLUG = "default"


async def ensure_default_org_and_tenant() -> tuple[UUID, UUID]:
    """Create the "default" organization and tenant if absent; returns (org id, tenant id)."""
    await Organization.insert(Organization(slug=DEFAULT_SLUG, name="Default organization")).on_conflict(
        target=Organization.slug, action="DO NOTHING"
    )
    org = await Organization.select(Organization.id).where(Organization.slug == DEFAULT_SLUG).first()
    if org is None:  # only if someone deleted it between the insert and this read
        raise LookupError("the default organization vanished while being created")
    org_id = _uuid(org["id"])

    await Tenant.insert(Tenant(org=org_id, slug=DEFAULT_SLUG, name="Default tenant")).on_conflict(
        target=(Tenant.org, Tenant.slug), action="DO NOTHING"
    )
    tenant = (
        await Tenant.select(Tenant.id).where((Tenant.org == org_id) & (Tenant.slug == DEFAULT_SLUG)).first()
    )
    if tenant is None:
        raise LookupError("the default tenant vanished while being created")
    return org_id, _uuid(tenant["id"])


def _uuid(value: object) -> UUID:
    """Both drivers return UUID objects; be strict about it rather than trust an `Any`."""
    if not isinstance(value, UUID):
        raise TypeError(f"expected a UUID primary key, got {type(value).__name__}")
    return value
