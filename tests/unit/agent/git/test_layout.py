"""agent.git.layout against repositories and packs made by the real `git`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agent.git.layout import (
    fetched,
    idx_contains,
    init_workspace_repository,
    pack_count,
    recent_fetched,
    record_fetched,
)
from agent.git.smart_http import upload_pack_request

ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(*args: str | Path) -> str:
    return subprocess.run(
        ["git", *map(str, args)], env=ENV, capture_output=True, text=True, check=True
    ).stdout.strip()


def packed_repository(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bare repository whose three commits all live in one pack."""
    work = tmp_path / "work"
    work.mkdir()
    git("-C", work, "init", "-q", "-b", "main")
    commits = []
    for index in range(3):
        (work / "file.txt").write_text(f"version {index}\n")
        git("-C", work, "add", "-A")
        git("-C", work, "commit", "-q", "-m", f"v{index}")
        commits.append(git("-C", work, "rev-parse", "HEAD"))
    bare = tmp_path / "cache.git"
    git("clone", "-q", "--bare", work, bare)
    git("--git-dir", bare, "repack", "-a", "-d", "-q")
    return bare, commits


def test_idx_contains_finds_every_packed_object_and_nothing_else(tmp_path: Path) -> None:
    bare, commits = packed_repository(tmp_path)
    [idx] = (bare / "objects" / "pack").glob("*.idx")
    listed = git("--git-dir", bare, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)").split()
    assert len(listed) == 9  # 3 commits, 3 trees, 3 blobs
    assert all(idx_contains(idx, sha) for sha in listed)
    assert set(commits) <= set(listed)
    absent = ["0" * 40, "f" * 40, commits[0][:-1] + ("0" if commits[0][-1] != "0" else "1")]
    assert not any(idx_contains(idx, sha) for sha in absent)
    assert pack_count(bare) == 1


def test_recorded_commits_are_found_loose_or_packed_and_newest_come_first(tmp_path: Path) -> None:
    bare, commits = packed_repository(tmp_path)
    assert not fetched(bare, commits[0])
    for sha in commits:
        record_fetched(bare, sha)
        os.utime(bare / "refs/buildit/fetched" / sha, ns=(commits.index(sha) * 10**9,) * 2)
    assert all(fetched(bare, sha) for sha in commits)
    assert recent_fetched(bare, 2) == [commits[2], commits[1]]
    # git agrees these are refs, and after `git pack-refs` they are still found.
    assert git("--git-dir", bare, "rev-parse", f"refs/buildit/fetched/{commits[1]}") == commits[1]
    git("--git-dir", bare, "pack-refs", "--all")
    assert not (bare / "refs/buildit/fetched" / commits[0]).exists()
    assert all(fetched(bare, sha) for sha in commits)
    assert sorted(recent_fetched(bare, 5)) == sorted(commits)


def test_a_workspace_repository_is_a_self_contained_git_repository(tmp_path: Path) -> None:
    bare, commits = packed_repository(tmp_path)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    init_workspace_repository(bare, workspace, commits[1], "http://127.0.0.1:1/r.git", self_contained=True)
    git("-C", workspace, "read-tree", "--reset", "-u", commits[1])
    assert (workspace / "file.txt").read_text() == "version 1\n"
    assert git("-C", workspace, "rev-parse", "HEAD") == commits[1]
    assert git("-C", workspace, "status", "--porcelain") == ""
    assert git("-C", workspace, "remote", "get-url", "origin") == "http://127.0.0.1:1/r.git"
    assert git("-C", workspace, "fsck", "--no-dangling") == ""
    assert not (workspace / ".git/objects/info/alternates").exists()
    # An ordinary repository for whatever a stage does with it: branch, commit, tag.
    git("-C", workspace, "checkout", "-q", "-b", "feature")
    (workspace / "file.txt").write_text("changed\n")
    git("-C", workspace, "commit", "-q", "-am", "stage commit")
    git("-C", workspace, "tag", "v1")
    assert git("-C", workspace, "rev-parse", "HEAD~1") == commits[1]
    [pack] = (workspace / ".git/objects/pack").glob("*.pack")
    assert pack.stat().st_nlink == 1  # a copy: writing it cannot change the cache
    [cached] = (bare / "objects/pack").glob("*.pack")
    assert pack.read_bytes() == cached.read_bytes() and pack.stat().st_ino != cached.stat().st_ino


def test_a_workspace_borrows_the_cache_objects_by_default_sharing_no_file(tmp_path: Path) -> None:
    bare, commits = packed_repository(tmp_path)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    init_workspace_repository(bare, workspace, commits[2], "http://127.0.0.1:1/r.git")
    cache_inodes = {p.stat().st_ino for p in bare.rglob("*") if p.is_file()}
    assert not any(p.stat().st_ino in cache_inodes for p in (workspace / ".git").rglob("*") if p.is_file())
    git("-C", workspace, "read-tree", "--reset", "-u", commits[2])
    assert (workspace / "file.txt").read_text() == "version 2\n"
    assert git("-C", workspace, "status", "--porcelain") == ""
    assert git("-C", workspace, "fsck", "--no-dangling") == ""
    assert (workspace / ".git/objects/info/alternates").read_text().strip() == str(bare.resolve() / "objects")
    assert list((workspace / ".git/objects").rglob("*.pack")) == []
    # The cache merging its packs (as its housekeeping does) does not break the workspace.
    git("--git-dir", bare, "gc", "--quiet")
    assert git("-C", workspace, "log", "--format=%s") == "v2\nv1\nv0"


def test_the_fetch_request_is_pkt_line_framed() -> None:
    want = b"want " + b"a" * 40 + b" side-band-64k ofs-delta thin-pack no-progress agent=buildit-agent\n"
    assert len(want) + 4 == 0x74
    body = upload_pack_request("a" * 40, ["b" * 40])
    assert body == b"0074" + want + b"0000" + b"0032have " + b"b" * 40 + b"\n" + b"0009done\n"
