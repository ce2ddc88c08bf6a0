"""The UI's repository pages: the watched repositories of the tenant, and one repository.

Thin adapters like the other pages: they read through the services and operations the REST API
uses (`controller.repos.services`, `controller.repos.commands`) and render; adding, removing and
rotating the webhook secret are the page's script calling the REST API (web/static/pages/admin.js),
so the UI and integrations share one code path. A new webhook secret exists only in the answer to
the browser's request, never in a page.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.repos import services
from controller.repos.commands import pipeline_file_status

#: Forges whose push webhooks the controller understands, and the path each one posts to.
FORGES = (("GitHub", "/hooks/github"), ("Gitea / Forgejo", "/hooks/gitea"), ("GitLab", "/hooks/gitlab"))


def _base_url(deps: Deps) -> str:
    """The controller's URL as forges reach it (BUILDIT_PUBLIC_URL, else its own address)."""
    base = deps.triggers.git_base_url if deps.triggers is not None else ""
    return base.removesuffix("/git")


class RepoPagesController(Controller):
    """`/repos` and `/repos/{id}`: seen by viewers; changes need maintainers (the REST API checks)."""

    path = "/repos"
    opt = requires(Permission.READ)
    include_in_schema = False

    @get("/")
    async def repositories(self, deps: NamedDependency[Deps]) -> Template:
        """Every watched repository of the tenant: status, branches, its pipeline; add and remove."""
        rows = await services.list_repositories(deps.tenant, deps.triggers.box) if deps.triggers else []
        repos = [services.repo_json(r, "") for r in rows]
        return Template(template_name="repos.html", context={"repos": repos, "active": "repos"})

    @get("/{repo_id:uuid}")
    async def repository(self, deps: NamedDependency[Deps], repo_id: FromPath[UUID]) -> Template:
        """One repository: URL (credentials hidden), branches and their heads, webhooks and secret
        rotation, the newest pipeline file's state, recent triggers and what each became."""
        engine = deps.triggers
        repo = engine.repository(repo_id, deps.tenant) if engine is not None else None
        if engine is None or repo is None:
            return Template(
                template_name="not_found.html",
                context={"message": f"There is no repository {repo_id}."},
                status_code=404,
            )
        base = _base_url(deps)
        context: dict[str, Any] = {
            "repo": services.repo_json(repo, engine.git_url(repo.id)),
            "heads": sorted((await services.branch_heads(repo_id)).items()),
            "triggers": await services.recent_triggers(repo_id),
            "file_status": await pipeline_file_status(engine, repo),
            "hooks": [(forge, base + path) for forge, path in FORGES],
            "generic_hook": f"{base}/hooks/git/{repo.id}",
            "active": "repos",
        }
        return Template(template_name="repo.html", context=context)
