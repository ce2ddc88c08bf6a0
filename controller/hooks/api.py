"""Webhook endpoints: a forge says "pushed", the repository is fetched now.

`POST /hooks/github`, `/hooks/gitea`, `/hooks/gitlab` find the registered repositories whose URL
matches the payload's and check the signature (or token) with each one's webhook secret;
`POST /hooks/git/{repo_id}` is for anything else (a `post-receive` hook, a script) and takes the
secret as a bearer token. A forged or unsigned hook gets 401 and triggers nothing; a hook for a
repository nobody registered gets 404. Verified hooks answer 202 at once and the fetch happens
in the background (forges give up on slow hooks).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import Invalid, NotFound, Unauthenticated
from controller.hooks.payloads import PayloadError, parse_generic, parse_push, same_repository
from controller.hooks.verify import verify_bearer, verify_gitea, verify_github, verify_gitlab
from controller.repos.services import RepoRow

_EVENT_HEADER = {"github": "x-github-event", "gitea": "x-gitea-event", "gitlab": "x-gitlab-event"}


def _verified(forge: str, repo: RepoRow, body: bytes, headers: Any) -> bool:
    if forge == "github":
        return verify_github(repo.webhook_secret, body, headers.get("x-hub-signature-256"))
    if forge == "gitea":
        signature = headers.get("x-gitea-signature") or headers.get("x-hub-signature-256")
        return verify_gitea(repo.webhook_secret, body, signature)
    return verify_gitlab(repo.webhook_secret, headers.get("x-gitlab-token"))


class HooksController(Controller):
    """Push webhooks (see the module docstring)."""

    path = "/hooks"
    #: Forges are authenticated by each payload's signature (HMAC or token), not by a user.
    opt = {**requires(Permission.WEBHOOK), "exclude_from_csrf": True}
    tags = ["webhooks"]

    async def _forge(self, forge: str, deps: Deps, request: Request[Any, Any, Any]) -> dict[str, Any]:
        assert deps.triggers is not None
        body = await request.body()
        try:
            event = parse_push(forge, request.headers.get(_EVENT_HEADER[forge]), body)
        except PayloadError as exc:
            raise Invalid(f"not a {forge} webhook payload: {exc}") from None
        if event is None:
            return {"status": "ignored", "detail": "not a push event"}
        matching = [
            repo
            for repo in deps.triggers.repositories()
            if any(same_repository(repo.url, url) for url in event.clone_urls)
        ]
        if not matching:
            raise NotFound(
                f"no registered repository matches {', '.join(event.clone_urls[:3]) or 'this payload'}; "
                "register it with POST /api/v1/repos",
            )
        verified = [repo for repo in matching if _verified(forge, repo, body, request.headers)]
        if not verified:
            raise Unauthenticated(
                f"the {forge} webhook signature does not match the repository's webhook secret"
            )
        head = (event.branch, event.after) if event.branch and event.after else None
        for repo in verified:
            await deps.triggers.hook(repo.id, head)
        return {"status": "accepted", "repositories": [str(repo.id) for repo in verified]}

    @post("/github", status_code=202)
    async def github(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> dict[str, Any]:
        """GitHub push webhook (`X-Hub-Signature-256`)."""
        return await self._forge("github", deps, request)

    @post("/gitea", status_code=202)
    async def gitea(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Gitea (and Forgejo) push webhook (`X-Gitea-Signature`)."""
        return await self._forge("gitea", deps, request)

    @post("/gitlab", status_code=202)
    async def gitlab(self, deps: NamedDependency[Deps], request: Request[Any, Any, Any]) -> dict[str, Any]:
        """GitLab push webhook (`X-Gitlab-Token`)."""
        return await self._forge("gitlab", deps, request)

    @post("/git/{repo_id:uuid}", status_code=202)
    async def generic(
        self, deps: NamedDependency[Deps], request: Request[Any, Any, Any], repo_id: FromPath[UUID]
    ) -> dict[str, Any]:
        """Any other notifier: `Authorization: Bearer <webhook secret>`.

        The body is empty, or `{"ref": "refs/heads/<branch>", "after": "<sha>"}` (what a
        `post-receive` hook knows), which lets the controller fetch that commit in one request.
        """
        assert deps.triggers is not None
        repo = deps.triggers.repository(repo_id)
        if repo is None:
            raise NotFound(f"repository {repo_id} not found")
        if not verify_bearer(repo.webhook_secret, request.headers.get("authorization")):
            raise Unauthenticated("missing or wrong 'Authorization: Bearer <webhook secret>'")
        try:
            head = parse_generic(await request.body())
        except PayloadError as exc:
            raise Invalid(f"not a push notification: {exc}") from None
        await deps.triggers.hook(repo_id, head)
        return {"status": "accepted", "repositories": [str(repo_id)]}
