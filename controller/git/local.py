"""Reading a local working copy: the commit it is at, and which files Git tracks.

`buildit run` uses this so `git.*` variables match what CI would see, and so the stage workspace
holds the tracked files only (like a fresh checkout), not build junk lying around.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# dulwich is imported inside the functions: `buildit run` outside a repository never pays for it.


@dataclass(frozen=True)
class CommitInfo:
    """HEAD of a working copy. `branch` is empty on a detached HEAD."""

    root: Path
    sha: str
    branch: str
    message: str
    author: str


def find_repo_root(path: Path) -> Path | None:
    """The working tree root of the repository holding `path`, or None outside any repository."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    resolved = path.resolve()
    if not any((p / ".git").exists() for p in (resolved, *resolved.parents)):
        return None
    try:
        repo = Repo.discover(str(path))
    except NotGitRepository:
        return None
    try:
        return Path(repo.path).resolve()
    finally:
        repo.close()


def head_commit(path: Path) -> CommitInfo | None:
    """The commit HEAD points at, or None outside a repository or before the first commit."""
    root = find_repo_root(path)
    if root is None:
        return None
    from dulwich.objects import Commit
    from dulwich.refs import HEADREF
    from dulwich.repo import Repo

    repo = Repo(str(root))
    try:
        try:
            sha = repo.head()
        except KeyError:
            return None
        commit = repo[sha]
        if not isinstance(commit, Commit):  # HEAD always names a commit in a sound repository
            return None
        refs, _ = repo.refs.follow(HEADREF)
        branch = ""
        if len(refs) > 1 and refs[-1].startswith(b"refs/heads/"):
            branch = refs[-1][len(b"refs/heads/") :].decode("utf-8", "replace")
        message = commit.message.decode(commit.encoding or "utf-8", "replace").strip()
        author = commit.author.decode("utf-8", "replace")
        return CommitInfo(root, sha.decode("ascii"), branch, message, author)
    finally:
        repo.close()


def tracked_files(root: Path) -> list[str]:
    """Paths (relative, '/'-separated) of files in the Git index of the repository at `root`."""
    from dulwich.repo import Repo

    repo = Repo(str(root))
    try:
        index = repo.open_index()
        return sorted(path.decode("utf-8", "surrogateescape") for path in index)
    finally:
        repo.close()
