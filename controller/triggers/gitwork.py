"""Blocking Git work of the trigger engine, and running it off the event loop.

Split out of controller.triggers.trigger_engine (which keeps the per-repository state): these are
the stateless pieces, each one worker-thread hop or a rule about a mirror's contents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from controller.git.mirror import CommitMeta, GitError, Mirror

PIPELINE_FILE = ".buildit.kdl"
FETCH_TIMEOUT_S = 120.0
_T = TypeVar("_T")


def default_branch(heads: dict[str, str]) -> str | None:
    """The branch built when a repository names none: main, else master, else the first by name."""
    for name in ("main", "master"):
        if name in heads:
            return name
    return min(heads) if heads else None


def private_dir(path: Path) -> None:
    """The mirrors' directory, readable by the controller's user only (it holds private code)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def pipeline_at(mirror: Mirror, sha: str) -> tuple[bytes | None, CommitMeta]:
    """The pipeline file and the commit's metadata, read in one worker-thread hop."""
    return mirror.read_file(sha, PIPELINE_FILE), mirror.commit(sha)


def first_fetch(mirror: Mirror) -> dict[str, str]:
    mirror.ensure()
    return mirror.fetch()


async def in_thread(fn: Callable[..., _T], *args: object, timeout: float | None = None) -> _T:
    """Blocking Git work off the event loop (bounded when `timeout` is given)."""
    call = asyncio.to_thread(fn, *args)
    if timeout is None:
        return await call
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise GitError(f"no answer within {timeout:g}s (is the remote reachable?)") from None
