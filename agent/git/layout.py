"""Git repository files the agent reads and writes itself, where a `git` process would cost more.

Each `git` command is a process start (3-6 ms here), and a stage's workspace used to need six of
them. The steps below are simple, documented parts of Git's repository layout (gitrepository-layout,
gitformat-pack), so plain file operations do them in microseconds:

* whether the cache already fetched a commit: the ref `refs/buildit/fetched/<sha>` exists (loose, or
  in `packed-refs` once Git's housekeeping packed it);
* the cache's newest fetched commits, the `have`s of the next fetch;
* recording a fetched commit: writing that ref (a file with the id), atomically;
* whether a pack's index lists an object (the `.idx` v2 table is sorted: a binary search);
* a workspace repository: `.git` with HEAD detached at the commit, `origin` set, and the cache's
  objects borrowed through `objects/info/alternates` (what `git clone --shared` does), or copied in
  for a stage that may not read the cache.

Only `git read-tree` (writing the files and the index) is left to Git.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Final

__all__ = [
    "FETCHED_PREFIX",
    "adopt_pack",
    "fetched",
    "idx_contains",
    "init_workspace_repository",
    "pack_count",
    "recent_fetched",
    "record_fetched",
]

FETCHED_PREFIX: Final = "refs/buildit/fetched/"
_IDX_MAGIC: Final = b"\xfftOc\x00\x00\x00\x02"
_FANOUT_END: Final = 8 + 256 * 4


def fetched(cache: Path, sha: str) -> bool:
    """True when the cache recorded `sha` as fetched (so its objects are all there)."""
    if (cache / FETCHED_PREFIX / sha).is_file():
        return True
    try:
        packed = (cache / "packed-refs").read_text("ascii", "replace")
    except OSError:
        return False
    return f"{sha} {FETCHED_PREFIX}{sha}\n" in packed


def recent_fetched(cache: Path, limit: int) -> list[str]:
    """Up to `limit` fetched commits, newest first: the `have`s that make a fetch incremental."""
    folder = cache / FETCHED_PREFIX
    try:
        entries = [(entry.stat().st_mtime_ns, entry.name) for entry in os.scandir(folder) if entry.is_file()]
    except OSError:
        entries = []
    entries.sort(reverse=True)
    names = [name for _, name in entries[:limit]]
    if len(names) < limit:
        with contextlib.suppress(OSError):
            for line in (cache / "packed-refs").read_text("ascii", "replace").splitlines():
                sha, _, ref = line.partition(" ")
                if ref.startswith(FETCHED_PREFIX) and sha not in names:
                    names.append(sha)
                    if len(names) >= limit:
                        break
    return names


def record_fetched(cache: Path, sha: str) -> None:
    """Write `refs/buildit/fetched/<sha>` (atomically): the commit stays reachable and known."""
    folder = cache / FETCHED_PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    tmp.write_text(f"{sha}\n", "ascii")
    os.replace(tmp, folder / sha)


def adopt_pack(cache: Path, idx: Path, sha: str) -> bool:
    """Record `sha` as fetched when the just-indexed pack `idx` holds it; False when it does not."""
    if not (idx.is_file() and idx_contains(idx, sha)):
        return False
    record_fetched(cache, sha)
    return True


def idx_contains(idx: Path, sha: str) -> bool:
    """True when the pack index `idx` (version 2) lists object `sha` (40 hex digits)."""
    target = bytes.fromhex(sha)
    with idx.open("rb") as handle:
        data = handle.read()
    if not data.startswith(_IDX_MAGIC) or len(data) < _FANOUT_END:
        return False
    first = target[0]
    low = int.from_bytes(data[8 + (first - 1) * 4 : 8 + first * 4], "big") if first else 0
    high = int.from_bytes(data[8 + first * 4 : 8 + (first + 1) * 4], "big")
    width = len(target)
    while low < high:
        middle = (low + high) // 2
        start = _FANOUT_END + middle * width
        found = data[start : start + width]
        if found == target:
            return True
        if found < target:
            low = middle + 1
        else:
            high = middle
    return False


def pack_count(cache: Path) -> int:
    """How many packs the cache holds (each fast fetch adds one; housekeeping merges them)."""
    try:
        return sum(1 for name in os.listdir(cache / "objects" / "pack") if name.endswith(".pack"))
    except OSError:
        return 0


_CONFIG_TEMPLATE: Final = """[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = false
\tlogallrefupdates = true
[remote "origin"]
\turl = {url}
\tfetch = +refs/heads/*:refs/remotes/origin/*
"""


def init_workspace_repository(
    cache: Path, workspace: Path, sha: str, origin_url: str, *, self_contained: bool = False
) -> None:
    """Make `workspace/.git`: HEAD detached at `sha`, `origin` = `origin_url`, the cache's objects.

    A workspace shares no inode with the cache: a stage may write anything into its workspace,
    and a hardlinked pack file (the earlier design, as `git clone --local`) let a container
    running as root overwrite the cache's packs, failing every later build of that repository.
    By default the cache's objects directory is named in `objects/info/alternates`, as
    `git clone --shared` does: one small file, whatever the repository's size. A container gets
    that directory mounted read-only at the same path (`agent.executors.docker`); a process on
    this host reads it in place. Self-contained (for a stage that may not read the cache, e.g.
    one run as another user) the object files are copied. The cache never loses an object a
    workspace can need (every fetched commit stays referenced); call this under the cache's lock,
    so no repack removes a pack between listing and copying it. `git read-tree` writes the files.
    """
    if any(ch in origin_url for ch in '\n\r"\\'):
        raise ValueError("the repository URL contains characters a Git config value cannot hold")
    git_dir = workspace / ".git"
    # Only what Git requires of a repository (HEAD, refs/, objects/): each directory created costs
    # a file-system metadata write, and Git makes the others (refs/heads, info, …) when it needs them.
    (git_dir / "refs").mkdir(parents=True, exist_ok=True)
    (git_dir / "objects").mkdir(exist_ok=True)
    (git_dir / "HEAD").write_text(f"{sha}\n", "ascii")
    (git_dir / "config").write_text(_CONFIG_TEMPLATE.format(url=origin_url), "utf-8")
    source = cache / "objects"
    if not self_contained:
        (git_dir / "objects" / "info").mkdir()
        (git_dir / "objects" / "info" / "alternates").write_text(f"{source.resolve()}\n", "utf-8")
        return
    # Copies, never links: the workspace's owner may write them.
    with os.scandir(source) as entries:
        for entry in entries:
            if not entry.is_dir() or entry.name == "info":
                continue
            target = git_dir / "objects" / entry.name
            target.mkdir(exist_ok=True)
            with os.scandir(entry.path) as files:
                for item in files:
                    if item.is_file() and not _temporary(item.name):
                        shutil.copyfile(item.path, target / item.name)


def _temporary(name: str) -> bool:
    """A file some git is still writing (or left behind when killed): not part of the repository."""
    return name.startswith(("tmp", ".tmp")) or name.endswith(".lock")
