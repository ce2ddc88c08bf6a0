"""The repository operations: registering (who may make the controller fetch what, then the
fetch), removing, rotating the webhook secret, and the state of the newest pipeline file.

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

import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from controller.artifacts.store import ArtifactStore
from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.errors import Forbidden, NotFound
from controller.git.sources import Location, host_allowed, is_internal_host, locate
from controller.pipelines.commands import remove_with_runs
from controller.pipelines.parsing import parse
from controller.pipelines.services import diagnostic_json, get_pipeline
from controller.repos import services
from controller.repos.services import RepoRow, RepoSettings, check_settings
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler
from controller.triggers.gitwork import PIPELINE_FILE
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


async def unregister(
    engine: TriggerEngine,
    caller: Caller,
    repo_id: UUID,
    scheduler: Scheduler,
    logs: LogStore,
    store: ArtifactStore | None,
) -> bool:
    """Stop watching a repository of the caller's tenant and delete it with its pipeline, runs (its
    running ones cancelled first), their logs and artifacts, and its mirror; False when the tenant
    has no such repository (nothing changed, nothing audited)."""
    repo = engine.repository(repo_id, caller.tenant)
    if repo is None:
        return False
    runs = await remove_with_runs(
        scheduler,
        logs,
        store,
        repo.pipeline_id,
        "the repository was removed",
        lambda: engine.unregister(repo_id, caller.tenant),
    )
    await audit.record("repository.unregister", f"{repo.name} ({repo_id}, {runs} run(s))", caller=caller)
    return True


async def rotate_webhook_secret(engine: TriggerEngine, caller: Caller, repo_id: UUID) -> str:
    """Give a repository of the caller's tenant a new generated webhook secret; returns it (the
    caller shows it once). The old one stops verifying hooks at once: configure the new one on
    the forge. Audited, never with the secret."""
    repo = engine.repository(repo_id, caller.tenant)
    if repo is None:
        raise NotFound(f"repository {repo_id} not found; list them with GET /api/v1/repos")
    secret = secrets.token_urlsafe(24)
    await services.set_webhook_secret(repo_id, secret, engine.box)
    # Webhooks verify against the engine's row of the repository: it holds the new secret now.
    repo.webhook_secret = secret
    await audit.record("repository.rotate_webhook_secret", f"{repo.name} ({repo_id})", caller=caller)
    return secret


@dataclass(frozen=True)
class PipelineFileStatus:
    """The `.buildit.kdl` at the head of a repository's default branch, next to the file its
    pipeline shows: what a person needs to see that the newest commit broke the file."""

    #: "valid", "invalid", "missing" (no file at that commit), "no-branch" (nothing pushed yet).
    state: str
    branch: str | None
    sha: str | None
    #: The commit of the file the pipeline shows (the newest valid one; "" when not known).
    shown_sha: str
    diagnostics: list[dict[str, Any]]
    #: One sentence saying all of it, e.g. "the .buildit.kdl at abc1234 (newest on main) is invalid: …".
    summary: str

    def json(self) -> dict[str, Any]:
        """The status for API responses."""
        return {
            "state": self.state,
            "branch": self.branch,
            "sha": self.sha,
            "shown_sha": self.shown_sha or None,
            "diagnostics": self.diagnostics,
            "summary": self.summary,
        }


async def pipeline_file_status(engine: TriggerEngine, repo: RepoRow) -> PipelineFileStatus:
    """Read and check the newest `.buildit.kdl` of a repository's default branch (see the class)."""
    row = await get_pipeline(repo.tenant, repo.pipeline_id)
    shown = str(row.get("config_sha") or "") if row is not None else ""
    newest = await engine.newest_pipeline_file(repo.id, repo.tenant)
    if newest is None:
        summary = "nothing pushed yet: commit a .buildit.kdl to the default branch"
        return PipelineFileStatus("no-branch", None, None, shown, [], summary)
    branch, sha, text = newest
    where = f"the .buildit.kdl at {sha[:7]} (newest on {branch})"
    earlier = f"; the file shown is the last valid one, from {shown[:7]}" if shown and shown != sha else ""
    if text is None:
        summary = f"there is no .buildit.kdl at {sha[:7]} (newest on {branch}): pushes run nothing{earlier}"
        return PipelineFileStatus("missing", branch, sha, shown, [], summary)
    parsed, problems = await parse(text, PIPELINE_FILE)
    if parsed is None:
        diagnostics = [diagnostic_json(d) for d in problems]
        first = problems[0].format().splitlines()[0].rstrip(".") if problems else "it does not parse"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        summary = f"{where} is invalid: {first}{more}{earlier}"
        return PipelineFileStatus("invalid", branch, sha, shown, diagnostics, summary)
    if shown and shown != sha:
        summary = f"{where} is valid; the file shown is from {shown[:7]}"
    else:
        summary = f"{where} is valid; it is the file shown"
    return PipelineFileStatus("valid", branch, sha, shown, [], summary)
