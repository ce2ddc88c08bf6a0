"""Registering a watched repository: who may make the controller fetch what, then the fetch.

Registering is a probe: the controller reads the path or fetches the URL at once, from its own
machine and network, and whatever answers becomes a mirror the tenant can read. So:

- a path on the controller's machine or a `file://` URL: organization owners and admins only;
- an `http://` or `git://` URL (plaintext: anyone on the way can change the code): the same;
- an `https://`, `ssh://` or `user@host:path` URL: tenant maintainers too, when its host is in
  BUILDIT_REPO_HOSTS, or, with that list empty, when the host is not an internal address
  (loopback, private, link-local, `localhost`); other hosts need an organization owner or admin.

Every rule is decided from the text alone (`controller.git.sources.locate`), before the disk or
the network is touched: a refused request learns nothing, not even whether a path exists. A fetch
that fails is reported in one neutral sentence (see `TriggerEngine.register`), and the
controller follows no HTTP redirect (`controller.git.mirror`), so an allowed host cannot send it
elsewhere. The repository belongs to the caller's tenant.

The same rules decide where a tenant's notifications may be posted (`check_may_reach`, used by
controller.notify.commands): a webhook URL makes the controller reach a host too.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.errors import Forbidden
from controller.git.sources import Location, host_allowed, is_internal_host, locate
from controller.repos.services import RepoRow, RepoSettings, check_settings
from controller.triggers.trigger_engine import TriggerEngine

#: URL schemes tenant maintainers may register (scp-like `user@host:path` is ssh).
MAINTAINER_SCHEMES = frozenset({"https", "ssh"})


@dataclass(frozen=True)
class Probe:
    """What the controller is asked to reach, in the words of the refusals: `act` (what the caller
    may not do), `reach` (how the controller touches the host) and `secure` (what to use instead of
    a plaintext URL)."""

    act: str
    reach: str
    secure: str


REGISTER = Probe("register", "fetches from", "the repository's https:// or ssh:// URL")


def check_may_register(url: str, caller: Caller, allowed_hosts: tuple[str, ...]) -> None:
    """Forbidden, saying who may, unless `caller` may make the controller fetch `url` (see the
    module docstring). Reads nothing but the text."""
    if caller.is_org_admin:
        return
    where = locate(url)
    if where.kind == "unknown":
        return  # not a repository location at all: parse_source refuses it, without I/O, saying why
    check_may_reach(where, caller, allowed_hosts, REGISTER)


def check_may_reach(where: Location, caller: Caller, allowed_hosts: tuple[str, ...], probe: Probe) -> None:
    """The rules of the module docstring for any location the controller would reach on a caller's
    behalf (a repository to fetch, a webhook to post to): Forbidden, saying who may, unless
    `caller` may. Reads nothing but the text."""
    if caller.is_org_admin:
        return
    if where.kind == "local":
        raise Forbidden(
            f"only an organization owner or admin may {probe.act} a path on the controller's machine "
            f"(or a file:// URL); {probe.act} the repository by its https:// or ssh:// URL"
        )
    if where.scheme not in MAINTAINER_SCHEMES:
        raise Forbidden(
            f"{where.scheme}:// URLs are unencrypted: only an organization owner or admin may "
            f"{probe.act} one; use {probe.secure}"
        )
    if allowed_hosts:
        if not host_allowed(where.host, allowed_hosts):
            raise Forbidden(
                f"host {where.host} is not one the controller {probe.reach} for tenants (BUILDIT_REPO_HOSTS: "
                f"{', '.join(allowed_hosts)}); ask an organization owner or admin to {probe.act} it"
            )
    elif is_internal_host(where.host):
        raise Forbidden(
            f"host {where.host} is on the controller's own machine or network: only an organization "
            f"owner or admin may {probe.act} it (or list it in BUILDIT_REPO_HOSTS)"
        )


async def register(
    engine: TriggerEngine, caller: Caller, settings: RepoSettings, allowed_hosts: tuple[str, ...]
) -> RepoRow:
    """Register a repository in the caller's tenant: the input checked, then who may fetch it,
    then the first fetch (Invalid, Forbidden, AlreadyExists; nothing stored on any refusal)."""
    check_settings(settings)
    check_may_register(settings.url, caller, allowed_hosts)
    repo = await engine.register(settings, owner=(caller.org, caller.tenant))
    await audit.record("repository.register", f"{repo.name} ({repo.id})", caller=caller)
    return repo


async def unregister(engine: TriggerEngine, caller: Caller, repo_id: UUID) -> bool:
    """Stop watching a repository of the caller's tenant and delete its pipeline, runs and mirror;
    False when the tenant has no such repository (nothing changed, nothing audited)."""
    repo = engine.repository(repo_id, caller.tenant)
    if not await engine.unregister(repo_id, caller.tenant):
        return False
    name = repo.name if repo is not None else str(repo_id)
    await audit.record("repository.unregister", f"{name} ({repo_id})", caller=caller)
    return True
