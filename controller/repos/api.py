"""REST: /api/v1/repos — register, list, show, delete watched repositories, rotate a webhook secret,
and run one now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Invalid, NotFound
from controller.repos import commands, services
from controller.repos.services import RepoSettings
from controller.runs.commands import RunCommands, TriggerInput
from controller.runs.services import record_json
from controller.triggers.trigger_engine import TriggerEngine


@dataclass
class CommitStatusConfig:
    """Where to report run statuses: the forge's API, the repository on it, and a token."""

    kind: str
    api_url: str
    repo: str
    token: str = field(repr=False)


@dataclass
class RegisterRepo:
    """Body of POST /api/v1/repos."""

    url: str
    name: str | None = None
    branches: list[str] = field(default_factory=list)
    poll_interval_s: int = services.DEFAULT_POLL_S
    run_each_commit: bool = False
    webhook_secret: str | None = field(default=None, repr=False)
    commit_status: CommitStatusConfig | None = None


@dataclass
class RunRepo:
    """Body of POST /api/v1/repos/{id}/runs: a branch head (default branch if omitted) or one commit."""

    branch: str | None = None
    sha: str | None = None
    #: Extra variables for this run, visible to the pipeline as ${env.NAME}.
    env: dict[str, str] = field(default_factory=dict)


def _engine(deps: Deps) -> TriggerEngine:
    assert deps.triggers is not None
    return deps.triggers


class ReposController(Controller):
    """Watched repositories of the caller's tenant (another tenant's id answers 404)."""

    path = "/api/v1/repos"
    opt = requires(Permission.READ)
    tags = ["repositories"]

    @get("/")
    async def list_repos(self, deps: NamedDependency[Deps]) -> dict[str, Any]:
        """Every repository with its watch status (`ok`, or `error` with the reason)."""
        engine = _engine(deps)
        rows = await services.list_repositories(deps.tenant, engine.box)
        return {"repos": [services.repo_json(r, engine.git_url(r.id)) for r in rows]}

    @post("/", status_code=201, opt=requires(Permission.MANAGE))
    async def register(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], data: JSONBody[RegisterRepo]
    ) -> dict[str, Any]:
        """Register a repository in this tenant and start watching it.

        Tenant maintainers register https:// and ssh:// URLs; paths on the controller's machine,
        plaintext URLs and hosts outside BUILDIT_REPO_HOSTS need an organization owner or admin
        (controller.repos.commands). The answer includes the webhook secret, this once: configure
        it on the forge's webhook.
        """
        engine = _engine(deps)
        if not isinstance(data.url, str) or not data.url.strip() or "\0" in data.url:
            raise Invalid("'url' must be a Git URL (https://, ssh://, git://, file://) or a local path")
        status = data.commit_status
        settings = RepoSettings(
            url=data.url.strip(),
            name=data.name,
            branches=tuple(data.branches),
            poll_interval_s=data.poll_interval_s,
            run_each_commit=data.run_each_commit,
            webhook_secret=data.webhook_secret,
            status_kind=status.kind if status else "",
            status_api_url=status.api_url if status else "",
            status_repo=status.repo if status else "",
            status_token=status.token if status else "",
        )
        repo = await commands.register(engine, caller, settings, deps.repo_hosts)
        return services.repo_json(repo, engine.git_url(repo.id), include_secret=True)

    @get("/{repo_id:uuid}")
    async def show(self, deps: NamedDependency[Deps], repo_id: FromPath[UUID]) -> dict[str, Any]:
        """One repository and what its recent triggers became (a run, or why not)."""
        engine = _engine(deps)
        repo = await services.get_repository(deps.tenant, repo_id, engine.box)
        if repo is None:
            raise NotFound(f"repository {repo_id} not found; list them with GET /api/v1/repos")
        body = services.repo_json(repo, engine.git_url(repo.id))
        body["branch_heads"] = await services.branch_heads(repo_id)
        body["triggers"] = await services.recent_triggers(repo_id)
        body["pipeline_file"] = (await commands.pipeline_file_status(engine, repo)).json()
        return body

    @delete("/{repo_id:uuid}", status_code=204, opt=requires(Permission.MANAGE))
    async def unregister(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], repo_id: FromPath[UUID]
    ) -> None:
        """Stop watching; deletes the repository's pipeline, runs (running ones cancelled first), their
        logs and artifacts, and its mirror."""
        removed = await commands.unregister(
            _engine(deps), caller, repo_id, deps.scheduler, deps.logs, deps.artifacts
        )
        if not removed:
            raise NotFound(f"repository {repo_id} not found; list them with GET /api/v1/repos")

    @post("/{repo_id:uuid}/webhook-secret", status_code=200, opt=requires(Permission.MANAGE))
    async def rotate_webhook_secret(
        self, deps: NamedDependency[Deps], caller: NamedDependency[Caller], repo_id: FromPath[UUID]
    ) -> dict[str, Any]:
        """A new generated webhook secret, returned this once; the old one stops working now."""
        secret = await commands.rotate_webhook_secret(_engine(deps), caller, repo_id)
        return {"id": str(repo_id), "webhook_secret": secret}

    @post("/{repo_id:uuid}/runs", status_code=201, opt=requires(Permission.RUN))
    async def run(
        self, commands: NamedDependency[RunCommands], repo_id: FromPath[UUID], data: JSONBody[RunRepo]
    ) -> dict[str, Any]:
        """Run a branch head or one commit now (`.buildit.kdl` read at that commit)."""
        for value, what in ((data.branch, "branch"), (data.sha, "sha")):
            if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
                raise Invalid(f"'{what}' must be a non-empty string")
        target = commands.repository(repo_id)
        request = TriggerInput(target=str(repo_id), branch=data.branch, sha=data.sha, env=data.env)
        return record_json(await commands.trigger(request, target))


def _is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdefABCDEF" for c in value)
