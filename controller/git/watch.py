"""Noticing commits in a local repository as they happen, so a run can start within milliseconds.

`watch_refs` listens to filesystem events (inotify on Linux, via watchfiles) on the repository's
git dir and wakes its caller once per batch of branch-ref changes. It does not say what changed:
the caller fetches and compares branch heads (`Mirror.fetch`), which is cheap when nothing did.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from controller.git.mirror import GitError, common_dir, git_dir

__all__ = ["DEBOUNCE_MS", "STEP_MS", "GitError", "git_dir", "watch_refs"]

# watchfiles' defaults (1600 ms debounce, 50 ms step) would add over a second to every run start.
# A batch is yielded STEP_MS after the last event of a burst, and at most DEBOUNCE_MS after the first.
DEBOUNCE_MS = 20
STEP_MS = 5


def _ref_filter(common: Path, gitdir: Path) -> tuple[set[str], tuple[str, ...]]:
    """Paths (absolute, as watchfiles reports them) that count as branch-ref changes."""
    base = str(common)
    exact = {os.path.join(base, "HEAD"), os.path.join(base, "packed-refs"), os.path.join(str(gitdir), "HEAD")}
    prefixes = (os.path.join(base, "refs", "heads") + os.sep, os.path.join(base, "reftable") + os.sep)
    return exact, prefixes


async def watch_refs(repo_path: Path) -> AsyncIterator[None]:
    """Yield once per batch of changes to the branch refs of the repository at `repo_path`.

    Watched: <git dir>/refs/heads/** (loose refs), packed-refs, HEAD (and a worktree's own HEAD, and
    reftable/ for reftable repositories). Ignored: lock files (*.lock, written before every ref
    update), objects/, logs/, index and everything else. There is no polling loop: one watchfiles
    watcher (inotify) on the repository's common git dir, with a low debounce. Cancelling the task
    that iterates stops the watcher thread within a few milliseconds. GitError if `repo_path` is not
    a repository.

    Each call holds one worker thread of anyio's default thread limiter while it waits (watchfiles
    runs its blocking Rust watcher in a thread) and inotify watches on the git dir's directories.
    """
    import watchfiles

    gitdir = git_dir(repo_path)
    common = common_dir(gitdir)
    exact, prefixes = _ref_filter(common, gitdir)

    def is_ref_change(change: watchfiles.Change, path: str) -> bool:
        if path.endswith(".lock"):
            return False
        return path in exact or path.startswith(prefixes)

    async for _changes in watchfiles.awatch(
        common,
        watch_filter=is_ref_change,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        recursive=True,
    ):
        yield
