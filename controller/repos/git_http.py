"""The mirrors over Git's smart-HTTP protocol, for agents: `<controller>/git/<repo id>.git`.

Read-only (upload-pack: clone and fetch). Who may read a mirror:

- an agent, with its own token (`Authorization: Bearer <agent token>`, what agents send), only
  while it holds a lease (leased or running) of a stage of a run of that repository: an agent
  reads the code it builds, not every repository of the controller (any tenant's);
- a person or integration, with an API key as the Bearer token (e.g. `git -c
  http.extraHeader="Authorization: Bearer bk_…" clone …`), holding read access in the
  repository's tenant.

Anything else answers 404, exactly like a repository that does not exist, so a credential learns
nothing about repositories it may not read. The check is in memory (the scheduler's leases, the
trigger engine's repositories): it is on every fetch. The Git work is dulwich's
(`controller.git.smart_http`), run in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from controller.auth.caller import Caller
from controller.auth.permissions import Permission, requires, role_allows
from controller.deps import Deps
from controller.errors import BuildItError, Forbidden, Invalid, NotFound
from controller.git.mirror import GitError, Mirror
from controller.git.smart_http import UPLOAD_PACK, advertisement, upload_pack
from controller.repos.services import RepoRow


def _repo_id(name: str) -> UUID | None:
    stem = name[:-4] if name.endswith(".git") else name
    try:
        return UUID(stem)
    except ValueError:
        return None


def may_read(deps: Deps, caller: Caller, repo: RepoRow) -> bool:
    """Whether `caller` may fetch `repo`'s mirror (see the module docstring)."""
    if caller.kind == "agent":
        agent = caller.agent_id
        return agent is not None and deps.scheduler.holds_stage_of(agent, repo.pipeline_id)
    return role_allows(caller.roles.get(repo.tenant), Permission.READ)


class GitHttpController(Controller):
    """GET …/info/refs and POST …/git-upload-pack for each mirror."""

    path = "/git"
    #: Agents fetch the commit of a stage they hold (their agent token); readers may clone too
    #: (`may_read` decides which mirror, after the policy point authenticated the caller).
    opt = requires(Permission.AGENT)
    tags = ["git"]
    include_in_schema = False

    def _mirror(self, deps: Deps, caller: Caller, name: str) -> tuple[Mirror, asyncio.Lock]:
        """The mirror `name` names, if the caller may read it; NotFound otherwise (either way)."""
        assert deps.triggers is not None
        repo_id = _repo_id(name)
        repo = deps.triggers.repository(repo_id) if repo_id is not None else None
        served = deps.triggers.served(repo_id) if repo is not None and repo_id is not None else None
        if repo is None or served is None or not may_read(deps, caller, repo):
            raise NotFound(f"no repository mirror named {name}")
        return served

    @get("/{name:str}/info/refs")
    async def info_refs(
        self,
        deps: NamedDependency[Deps],
        caller: NamedDependency[Caller],
        name: FromPath[str],
        service: FromQuery[str] = "",
    ) -> Response[bytes]:
        """The ref advertisement (smart protocol only)."""
        mirror, lock = self._mirror(deps, caller, name)
        if service != UPLOAD_PACK:
            raise Forbidden("this server is read-only and speaks the smart protocol: use git-upload-pack")
        try:
            async with lock:  # not while a fetch or repack changes the mirror
                content_type, body = await asyncio.to_thread(advertisement, mirror, service)
        except GitError as exc:
            raise BuildItError(str(exc)) from None
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-cache"})

    @post("/{name:str}/git-upload-pack", status_code=200)
    async def upload(
        self,
        deps: NamedDependency[Deps],
        caller: NamedDependency[Caller],
        request: Request[Any, Any, Any],
        name: FromPath[str],
    ) -> Response[bytes]:
        """Negotiation and the pack."""
        mirror, lock = self._mirror(deps, caller, name)
        body = await request.body()
        try:
            async with lock:
                content_type, result = await asyncio.to_thread(
                    upload_pack, mirror, body, request.headers.get("content-encoding")
                )
        except GitError as exc:
            raise Invalid(str(exc)) from None
        return Response(result, media_type=content_type, headers={"Cache-Control": "no-cache"})
