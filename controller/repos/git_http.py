"""The mirrors over Git's smart-HTTP protocol, for agents: `<controller>/git/<repo id>.git`.

Read-only (upload-pack: clone and fetch). Authenticated with the agent's own token, as
`Authorization: Bearer <token>` (what agents send) or as the password of HTTP basic auth (what a
person's `git clone` sends), so agents need no forge credentials and nobody else can read the
mirrors. The Git work is dulwich's (`controller.git.smart_http`), run in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery

from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.errors import BuildItError, Forbidden, Invalid, NotFound
from controller.git.mirror import GitError, Mirror
from controller.git.smart_http import UPLOAD_PACK, advertisement, upload_pack

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="buildit"'}


def _token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _repo_id(name: str) -> UUID | None:
    stem = name[:-4] if name.endswith(".git") else name
    try:
        return UUID(stem)
    except ValueError:
        return None


class GitHttpController(Controller):
    """GET …/info/refs and POST …/git-upload-pack for each mirror."""

    path = "/git"
    #: Agents fetch the commit of a stage they hold (their agent token); readers may clone too.
    opt = requires(Permission.AGENT)
    tags = ["git"]
    include_in_schema = False

    async def _mirror(
        self, deps: Deps, request: Request[Any, Any, Any], name: str
    ) -> tuple[Mirror, asyncio.Lock]:
        assert deps.triggers is not None
        token = _token(request.headers.get("authorization"))
        agent = await deps.registry.authenticate(token) if token else None
        if agent is None:
            raise HTTPException(
                status_code=401,
                detail="an agent token is required (Authorization: Bearer <agent token>)",
                headers=_CHALLENGE,
            )
        repo_id = _repo_id(name)
        served = deps.triggers.served(repo_id) if repo_id is not None else None
        if served is None:
            raise NotFound(f"no repository mirror named {name}")
        return served

    @get("/{name:str}/info/refs")
    async def info_refs(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        name: FromPath[str],
        service: FromQuery[str] = "",
    ) -> Response[bytes]:
        """The ref advertisement (smart protocol only)."""
        mirror, lock = await self._mirror(deps, request, name)
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
        self, deps: NamedDependency[Deps], request: Request[Any, Any, Any], name: FromPath[str]
    ) -> Response[bytes]:
        """Negotiation and the pack."""
        mirror, lock = await self._mirror(deps, request, name)
        body = await request.body()
        try:
            async with lock:
                content_type, result = await asyncio.to_thread(
                    upload_pack, mirror, body, request.headers.get("content-encoding")
                )
        except GitError as exc:
            raise Invalid(str(exc)) from None
        return Response(result, media_type=content_type, headers={"Cache-Control": "no-cache"})
