"""REST: /api/v1/repos — register, list, show, delete watched repositories, and run one now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.datastructures import State

from controller.api_errors import error
from controller.repos import services
from controller.repos.services import RepoSettings
from controller.runs.services import find_run, run_with_stages
from controller.services import Services
from controller.triggers.engine import TriggerEngine


@dataclass
class CommitStatusConfig:
    """Where to report run statuses: the forge's API, the repository on it, and a token."""

    kind: str
    api_url: str
    repo: str
    token: str


@dataclass
class RegisterRepo:
    """Body of POST /api/v1/repos."""

    url: str
    name: str | None = None
    branches: list[str] = field(default_factory=list)
    poll_interval_s: int = services.DEFAULT_POLL_S
    run_each_commit: bool = False
    webhook_secret: str | None = None
    commit_status: CommitStatusConfig | None = None


@dataclass
class RunRepo:
    """Body of POST /api/v1/repos/{id}/runs: a branch head (default branch if omitted) or one commit."""

    branch: str | None = None
    sha: str | None = None


def _engine(state: State) -> TriggerEngine:
    svc: Services = state.services
    assert svc.triggers is not None
    return svc.triggers


class ReposController(Controller):
    """Watched repositories of the default tenant."""

    path = "/api/v1/repos"
    tags = ["repositories"]

    @get("/")
    async def list_repos(self, state: State) -> dict[str, Any]:
        """Every repository with its watch status (`ok`, or `error` with the reason)."""
        engine = _engine(state)
        rows = await services.list_repositories(_engine(state).tenant)
        return {"repos": [services.repo_json(r, engine.git_url(r.id)) for r in rows]}

    @post("/", status_code=201)
    async def register(self, state: State, data: RegisterRepo) -> dict[str, Any]:
        """Register a repository (URL or a path on the controller's machine) and start watching it.

        The answer includes the webhook secret, this once: configure it on the forge's webhook.
        """
        engine = _engine(state)
        if not isinstance(data.url, str) or not data.url.strip() or "\0" in data.url:
            raise error(400, "'url' must be a Git URL (https://, ssh://, git://, file://) or a local path")
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
        repo = await engine.register(settings)
        return services.repo_json(repo, engine.git_url(repo.id), include_secret=True)

    @get("/{repo_id:uuid}")
    async def show(self, state: State, repo_id: UUID) -> dict[str, Any]:
        """One repository and what its recent triggers became (a run, or why not)."""
        engine = _engine(state)
        repo = await services.get_repository(engine.tenant, repo_id)
        if repo is None:
            raise error(404, f"repository {repo_id} not found; list them with GET /api/v1/repos")
        body = services.repo_json(repo, engine.git_url(repo.id))
        body["branch_heads"] = await services.branch_heads(repo_id)
        body["triggers"] = await services.recent_triggers(repo_id)
        return body

    @delete("/{repo_id:uuid}", status_code=204)
    async def unregister(self, state: State, repo_id: UUID) -> None:
        """Stop watching; deletes the repository's pipeline, runs and mirror."""
        if not await _engine(state).unregister(repo_id):
            raise error(404, f"repository {repo_id} not found; list them with GET /api/v1/repos")

    @post("/{repo_id:uuid}/runs", status_code=201)
    async def run(self, state: State, repo_id: UUID, data: RunRepo) -> dict[str, Any]:
        """Run a branch head or one commit now (`.buildit.kdl` read at that commit)."""
        engine = _engine(state)
        repo = engine.repository(repo_id)
        if repo is None:
            raise error(404, f"repository {repo_id} not found; list them with GET /api/v1/repos")
        for value, what in ((data.branch, "branch"), (data.sha, "sha")):
            if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
                raise error(400, f"'{what}' must be a non-empty string")
        if data.sha is not None and not _is_sha(data.sha):
            raise error(400, "'sha' must be a full 40-character hexadecimal commit id")
        run = await engine.trigger(repo_id, data.branch, data.sha.lower() if data.sha else None)
        if run is None:
            raise error(422, "that commit has no .buildit.kdl at the top of the repository: nothing to run")
        row = await find_run(run.pipeline_id, run.number)
        assert row is not None
        return await run_with_stages(row)


def _is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdefABCDEF" for c in value)
