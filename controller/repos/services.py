"""Storage of watched repositories: the rows behind the repos API and the trigger engine.

No Git here (that is `controller.git`) and no scheduling (that is `controller.triggers`): these
functions read and write the Repository, BranchHead, CommitTrigger and Pipeline rows, and turn
rows into the JSON the API returns, never including a secret. The webhook secret and the
commit-status token are sealed under the master key on the way in and opened on the way out
(`box`, see controller.secrets.atrest); in memory they never show in a repr.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from controller.db import is_unique_violation, write_transaction
from controller.db.columns import loaded
from controller.errors import AlreadyExists, Invalid
from controller.git.mirror import redact
from controller.names import check_name
from controller.pipelines.services import replace_config
from controller.pipelines.tables import Pipeline
from controller.repos.tables import BranchHead, CommitTrigger, Repository
from controller.runs.tables import Run
from controller.secrets.atrest import open_field, seal_field
from controller.secrets.crypto import SecretBox, Undecryptable

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_BRANCH_GLOBS = 50
DEFAULT_POLL_S = 60
MIN_POLL_S = 5
MAX_POLL_S = 24 * 3600
STATUS_KINDS = ("github", "gitea", "gitlab")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class RepoSettings:
    """What a user chooses when registering a repository (validated by `check_settings`)."""

    url: str
    name: str | None = None
    branches: tuple[str, ...] = ()
    poll_interval_s: int = DEFAULT_POLL_S
    run_each_commit: bool = False
    webhook_secret: str | None = field(default=None, repr=False)
    status_kind: str = ""
    status_api_url: str = ""
    status_repo: str = ""
    status_token: str = field(default="", repr=False)


@dataclass
class RepoRow:
    """A repository as the trigger engine uses it (secrets included: never serialise this)."""

    id: UUID
    name: str
    url: str
    kind: str
    branches: tuple[str, ...]
    poll_interval_s: int
    run_each_commit: bool
    webhook_secret: str = field(repr=False)
    pipeline_id: UUID
    #: The repository's owner: its pipeline, triggers and runs belong to this org and tenant.
    org: UUID
    tenant: UUID
    status: str = "pending"
    status_message: str = ""
    status_kind: str = ""
    status_api_url: str = ""
    status_repo: str = ""
    status_token: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def watches(self, branch: str, default_branch: str | None) -> bool:
        """Is `branch` one this repository builds? No globs means its default branch only."""
        if not self.branches:
            return branch == default_branch
        return any(fnmatch.fnmatchcase(branch, glob) for glob in self.branches)


def default_name(url: str) -> str:
    """`https://host/team/app.git` -> `app`; `/srv/repos/app` -> `app`."""
    tail = url.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    tail = tail[:-4] if tail.endswith(".git") else tail
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-.") or "repo"
    return cleaned[:MAX_NAME]


def check_settings(settings: RepoSettings) -> None:
    """Refuse bad registration input with a message that says what to fix (Invalid)."""
    if settings.name is not None:
        check_name(settings.name, "'name'")
    if settings.name is not None and (not _NAME.match(settings.name) or len(settings.name) > MAX_NAME):
        raise Invalid(
            f"'name' {settings.name!r} must be 1-{MAX_NAME} characters of letters, digits, '.', '_' or '-'"
        )
    if len(settings.branches) > MAX_BRANCH_GLOBS:
        raise Invalid(f"at most {MAX_BRANCH_GLOBS} branch globs")
    for glob in settings.branches:
        if not glob.strip() or len(glob) > 255 or any(c in glob for c in " \t\n\0~^:\\"):
            raise Invalid(f"branch glob {glob!r} is not a valid branch name pattern (e.g. main, release/*)")
    if not MIN_POLL_S <= settings.poll_interval_s <= MAX_POLL_S:
        raise Invalid(f"'poll_interval_s' must be between {MIN_POLL_S} and {MAX_POLL_S} seconds")
    if settings.webhook_secret is not None and not 16 <= len(settings.webhook_secret) <= 128:
        raise Invalid("'webhook_secret' must be 16-128 characters (or leave it out to get a generated one)")
    if settings.status_kind:
        if settings.status_kind not in STATUS_KINDS:
            raise Invalid(f"'status.kind' must be one of {', '.join(STATUS_KINDS)}")
        if not settings.status_api_url.startswith(("http://", "https://")):
            raise Invalid("'status.api_url' must be an http(s) URL, e.g. https://api.github.com")
        if not settings.status_repo.strip():
            raise Invalid("'status.repo' is required: owner/name (GitHub, Gitea) or a project id (GitLab)")
        if not settings.status_token:
            raise Invalid("'status.token' is required to report commit statuses")


def _opened(box: SecretBox, record: dict[str, Any], column: str) -> str:
    """A sealed column's plaintext; "" (logged, never the value) when it does not decrypt, which
    makes webhooks for it answer 401 and leaves its statuses unreported rather than garbled."""
    try:
        return open_field(box, "repository", record["id"], column, record[column])
    except Undecryptable:
        log.error(
            "the %s of repository %s (%s) does not decrypt with the master key; register the "
            "repository again to set a new one",
            column.replace("_", " "),
            record["name"],
            record["id"],
        )
        return ""


def _row(record: dict[str, Any], pipeline_id: UUID, box: SecretBox) -> RepoRow:
    return RepoRow(
        id=record["id"],
        name=record["name"],
        url=record["url"],
        kind=record["kind"],
        branches=tuple(loaded(record["branches"])),
        poll_interval_s=int(record["poll_interval_s"]),
        run_each_commit=bool(record["run_each_commit"]),
        webhook_secret=_opened(box, record, "webhook_secret"),
        pipeline_id=pipeline_id,
        org=record["org"],
        tenant=record["tenant"],
        status=record["status"],
        status_message=record["status_message"],
        status_kind=record["status_kind"],
        status_api_url=record["status_api_url"],
        status_repo=record["status_repo"],
        status_token=_opened(box, record, "status_token"),
    )


async def create_repository(
    org: UUID,
    tenant: UUID,
    settings: RepoSettings,
    kind: str,
    url: str,
    secret: str,
    config: str,
    box: SecretBox,
    config_sha: str = "",
) -> RepoRow:
    """Store a repository and its pipeline (one transaction); AlreadyExists on a taken name.
    `config` is the `.buildit.kdl` of its default branch's head, `config_sha` that commit."""
    name = settings.name or default_name(url)
    now = datetime.now(UTC)
    repo_id, pipeline_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with write_transaction():
            taken = await Repository.exists().where((Repository.tenant == tenant) & (Repository.name == name))
            if taken:
                raise AlreadyExists(f"a repository named '{name}' is registered already; pass another 'name'")
            pipeline_taken = await Pipeline.exists().where(
                (Pipeline.tenant == tenant) & (Pipeline.name == name)
            )
            if pipeline_taken:
                raise AlreadyExists(f"a pipeline named '{name}' exists already; pass another 'name'")
            await Repository.insert(
                Repository(
                    id=repo_id,
                    org=org,
                    tenant=tenant,
                    name=name,
                    url=url,
                    kind=kind,
                    branches=list(settings.branches),
                    poll_interval_s=settings.poll_interval_s,
                    run_each_commit=settings.run_each_commit,
                    webhook_secret=seal_field(box, "repository", repo_id, "webhook_secret", secret),
                    status="ok",
                    status_kind=settings.status_kind,
                    status_api_url=settings.status_api_url,
                    status_repo=settings.status_repo,
                    status_token=seal_field(
                        box, "repository", repo_id, "status_token", settings.status_token
                    ),
                    created_at=now,
                )
            )
            await Pipeline.insert(
                Pipeline(
                    id=pipeline_id,
                    org=org,
                    tenant=tenant,
                    name=name,
                    config=config,
                    created_at=now,
                    updated_at=now,
                    repository=repo_id,
                    config_sha=config_sha if config else "",
                )
            )
    except Exception as exc:
        if is_unique_violation(exc):
            raise AlreadyExists(f"a repository or pipeline named '{name}' exists already") from None
        raise
    found = await get_repository(tenant, repo_id, box)
    assert found is not None
    return found


async def list_repositories(tenant: UUID | None, box: SecretBox) -> list[RepoRow]:
    """Every repository (of a tenant, or of all tenants for the trigger engine), by name."""
    query = Repository.select()
    if tenant is not None:
        query = query.where(Repository.tenant == tenant)
    records = await query.order_by(Repository.name)
    pipelines = await Pipeline.select(Pipeline.id, Pipeline.repository).where(
        Pipeline.repository.is_not_null()
    )
    by_repo = {p["repository"]: p["id"] for p in pipelines}
    return [_row(r, by_repo[r["id"]], box) for r in records if r["id"] in by_repo]


async def get_repository(tenant: UUID | None, repo_id: UUID, box: SecretBox) -> RepoRow | None:
    """One repository, or None (also None for another tenant's)."""
    query = Repository.select().where(Repository.id == repo_id)
    if tenant is not None:
        query = query.where(Repository.tenant == tenant)
    record = await query.first()
    if record is None:
        return None
    pipeline = await Pipeline.select(Pipeline.id).where(Pipeline.repository == repo_id).first()
    if pipeline is None:
        return None
    return _row(record, pipeline["id"], box)


async def delete_repository(tenant: UUID | None, repo_id: UUID) -> bool:
    """Remove a repository with its pipeline and runs (cascade); False when it does not exist (in
    `tenant`; None: in any tenant)."""
    query = Repository.exists().where(Repository.id == repo_id)
    if tenant is not None:
        query = query.where(Repository.tenant == tenant)
    if not await query:
        return False
    async with write_transaction():
        await Pipeline.delete().where(Pipeline.repository == repo_id)
        await Repository.delete().where(Repository.id == repo_id)
    return True


async def set_status(repo_id: UUID, status: str, message: str, fetched: bool = False) -> None:
    """Record how the last fetch went (`ok` or `error` with the reason), shown by the API."""
    values: dict[Any, Any] = {Repository.status: status, Repository.status_message: message[:2000]}
    if fetched:
        values[Repository.last_fetched_at] = datetime.now(UTC)
    await Repository.update(values).where(Repository.id == repo_id)


async def set_pipeline_config(pipeline_id: UUID, config: str, sha: str) -> None:
    """Keep the newest valid `.buildit.kdl` of the default branch on the repository's pipeline (for
    display, with the commit it is from); a changed file is a new version of the pipeline."""
    row = await Pipeline.select(Pipeline.config).where(Pipeline.id == pipeline_id).first()
    if row is None:
        return
    if row["config"] != config:
        await replace_config(pipeline_id, config, sha=sha)
    else:
        await Pipeline.update({Pipeline.config_sha: sha}).where(Pipeline.id == pipeline_id)


async def set_webhook_secret(repo_id: UUID, secret: str, box: SecretBox) -> None:
    """Store a repository's new webhook secret, sealed under the master key."""
    sealed = seal_field(box, "repository", repo_id, "webhook_secret", secret)
    await Repository.update({Repository.webhook_secret: sealed}).where(Repository.id == repo_id)


async def branch_heads(repo_id: UUID) -> dict[str, str]:
    """The last commit seen per branch."""
    rows = await BranchHead.select(BranchHead.branch, BranchHead.sha).where(BranchHead.repository == repo_id)
    return {row["branch"]: row["sha"] for row in rows}


async def record_heads(
    org: UUID,
    tenant: UUID,
    repo_id: UUID,
    heads: dict[str, str],
    triggers: list[tuple[str, str]],
    source: str,
) -> None:
    """Store the new branch heads and the commits they trigger, in one transaction.

    `triggers` are (branch, sha) pairs. A commit already triggered for this repository (by the
    watcher, the poller or a webhook) is skipped: the unique (repository, dedupe_key) index is
    the guard, checked here first so the transaction does not fail.
    """
    now = datetime.now(UTC)
    async with write_transaction():
        for branch, sha in heads.items():
            updated = (
                await BranchHead.update({BranchHead.sha: sha, BranchHead.updated_at: now})
                .where((BranchHead.repository == repo_id) & (BranchHead.branch == branch))
                .returning(BranchHead.id)
            )
            if not updated:
                await BranchHead.insert(
                    BranchHead(id=uuid.uuid4(), repository=repo_id, branch=branch, sha=sha, updated_at=now)
                )
        for position, (branch, sha) in enumerate(triggers):
            seen = await CommitTrigger.exists().where(
                (CommitTrigger.repository == repo_id) & (CommitTrigger.dedupe_key == sha)
            )
            if not seen:
                await CommitTrigger.insert(
                    CommitTrigger(
                        id=uuid.uuid4(),
                        org=org,
                        tenant=tenant,
                        repository=repo_id,
                        sha=sha,
                        branch=branch,
                        source=source,
                        dedupe_key=sha,
                        # Distinct times keep the push's order (oldest first) when they are read back.
                        created_at=now + timedelta(microseconds=position),
                    )
                )


async def forget_heads(repo_id: UUID, branches: list[str]) -> None:
    """Branches deleted upstream: their next appearance counts as new."""
    if branches:
        await BranchHead.delete().where(
            (BranchHead.repository == repo_id) & BranchHead.branch.is_in(branches)
        )


async def add_manual_trigger(
    org: UUID, tenant: UUID, repo_id: UUID, branch: str, sha: str, source: str
) -> UUID:
    """A deliberate trigger (API, CLI, cron): never deduplicated against earlier ones."""
    trigger_id = uuid.uuid4()
    await CommitTrigger.insert(
        CommitTrigger(
            id=trigger_id,
            org=org,
            tenant=tenant,
            repository=repo_id,
            sha=sha,
            branch=branch,
            source=source,
            dedupe_key=f"{source}:{trigger_id}",
            created_at=datetime.now(UTC),
        )
    )
    return trigger_id


async def pending_triggers(repo_id: UUID) -> list[dict[str, Any]]:
    """Triggers not yet turned into runs, oldest first (also after a restart)."""
    rows: list[dict[str, Any]] = (
        await CommitTrigger.select()
        .where((CommitTrigger.repository == repo_id) & (CommitTrigger.status == "pending"))
        .order_by(CommitTrigger.created_at)
    )
    return rows


async def finish_trigger(trigger_id: UUID, outcome: str, run_id: UUID | None) -> None:
    """The trigger is handled: a run exists (or there was nothing to run, and `outcome` says why)."""
    await CommitTrigger.update(
        {CommitTrigger.status: "done", CommitTrigger.outcome: outcome[:2000], CommitTrigger.run: run_id}
    ).where(CommitTrigger.id == trigger_id)


async def recent_triggers(repo_id: UUID, limit: int = 20) -> list[dict[str, Any]]:
    """The newest triggers of a repository, for the API (what happened to each push)."""
    rows = (
        await CommitTrigger.select(
            CommitTrigger.id,
            CommitTrigger.sha,
            CommitTrigger.branch,
            CommitTrigger.source,
            CommitTrigger.status,
            CommitTrigger.outcome,
            CommitTrigger.run,
            CommitTrigger.created_at,
        )
        .where(CommitTrigger.repository == repo_id)
        .order_by(CommitTrigger.created_at, ascending=False)
        .limit(limit)
    )
    run_ids = [row["run"] for row in rows if row["run"]]
    numbers = (
        {r["id"]: r["number"] for r in await Run.select(Run.id, Run.number).where(Run.id.is_in(run_ids))}
        if run_ids
        else {}
    )
    return [
        {
            **row,
            "id": str(row["id"]),
            "run": str(row["run"]) if row["run"] else None,
            "run_number": numbers.get(row["run"]) if row["run"] else None,
            "created_at": row["created_at"].isoformat(),
        }
        for row in rows
    ]


def repo_json(repo: RepoRow, git_url: str, include_secret: bool = False) -> dict[str, Any]:
    """The API view of a repository. The webhook secret only when just generated (`include_secret`)."""
    body: dict[str, Any] = {
        "id": str(repo.id),
        "name": repo.name,
        "url": redact(repo.url),
        "kind": repo.kind,
        "branches": list(repo.branches),
        "poll_interval_s": repo.poll_interval_s,
        "run_each_commit": repo.run_each_commit,
        "pipeline_id": str(repo.pipeline_id),
        "status": repo.status,
        "status_message": repo.status_message,
        "mirror_url": git_url,
        "commit_status": (
            {"kind": repo.status_kind, "api_url": repo.status_api_url, "repo": repo.status_repo}
            if repo.status_kind
            else None
        ),
        "hooks": {
            "github": "/hooks/github",
            "gitea": "/hooks/gitea",
            "gitlab": "/hooks/gitlab",
            "generic": f"/hooks/git/{repo.id}",
        },
    }
    if include_secret:
        body["webhook_secret"] = repo.webhook_secret
    return body
