"""The bare mirror: classifying sources, fetching from local repositories, reading commits."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.git.mirror import (
    PIN_PREFIX,
    GitError,
    Mirror,
    RepoSource,
    parse_source,
    redact,
    remote_branches,
)

from .conftest import commit, git, head, init_repo

# --- parse_source ---------------------------------------------------------------------------------


def test_parse_source_accepts_local_repositories(work: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))

    assert parse_source(str(work)) == RepoSource("local", str(work.resolve()))
    assert parse_source("  work  ", base=tmp_path) == RepoSource("local", str(work.resolve()))
    assert parse_source("./bare.git", base=tmp_path) == RepoSource("local", str(bare.resolve()))
    assert parse_source(f"file://{work}") == RepoSource("local", str(work.resolve()))


def test_parse_source_accepts_remote_urls() -> None:
    for url in (
        "https://github.com/acme/app.git",
        "http://user:secret@git.example.test:8080/app",
        "git://git.example.test/app.git",
        "ssh://git@git.example.test:2222/acme/app.git",
        "git@github.com:acme/app.git",
    ):
        assert parse_source(f" {url}\n") == RepoSource("remote", url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no repository given"),
        ("   ", "no repository given"),
        ("ftp://x", "unsupported repository URL scheme ftp://"),
        ("http://", "has no host"),
        ("http://[::1/x.git", r"is malformed \(Invalid IPv6 URL\)"),
        ("missing-dir", "does not exist"),
    ],
)
def test_parse_source_rejects_bad_input(text: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(GitError, match=expected) as info:
        parse_source(text, base=tmp_path)
    assert "\n" not in str(info.value)
    if text.strip() in ("", "ftp://x"):
        assert "http(s)://" in str(info.value) and "user@host:path" in str(info.value)  # names the forms


def test_parse_source_rejects_non_repositories(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(GitError, match=r"plain is not a Git repository.*git init"):
        parse_source(str(plain))
    with pytest.raises(GitError, match="is not a directory"):
        parse_source(str(tmp_path / "file.txt"))
    with pytest.raises(GitError, match="does not exist"):
        parse_source(f"file://{tmp_path}/nope")


def test_redact_hides_credentials() -> None:
    assert redact("https://alice:s3cret@host/x.git") == "https://***@host/x.git"
    assert redact("fetching https://tok3n@host/x failed") == "fetching https://***@host/x failed"
    assert redact("git@github.com:acme/app.git") == "git@github.com:acme/app.git"


# --- fetch ----------------------------------------------------------------------------------------


def _mirror(tmp_path: Path, work: Path) -> Mirror:
    return Mirror(tmp_path / "mirrors" / "1.git", parse_source(str(work)))


def test_fetch_local_then_new_commit_branch_and_deletion(tmp_path: Path, work: Path) -> None:
    mirror = _mirror(tmp_path, work)
    assert mirror.branches() == {}
    mirror.ensure()
    mirror.ensure()  # idempotent
    first = head(work)
    assert mirror.fetch() == {"main": first}
    assert mirror.branches() == {"main": first}
    assert (mirror.path / "HEAD").read_text().strip() == "ref: refs/heads/main"

    packs_before = sorted(os.listdir(mirror.path / "objects" / "pack"))
    assert mirror.fetch() == {"main": first}  # nothing new: nothing transferred
    assert sorted(os.listdir(mirror.path / "objects" / "pack")) == packs_before

    second = commit(work)
    git(work, "branch", "feature/x", first)
    assert mirror.fetch() == {"main": second, "feature/x": first}
    assert mirror.has_commit(second)

    git(work, "branch", "-D", "feature/x")
    git(work, "pack-refs", "--all")  # refs in packed-refs only are read too
    assert mirror.fetch() == {"main": second}
    assert mirror.branches() == {"main": second}
    mirror.close()


def test_remote_branches_of_a_local_source(work: Path) -> None:
    git(work, "branch", "topic")
    assert remote_branches(parse_source(str(work))) == {"main": head(work), "topic": head(work)}


def test_fetch_from_bare_repository_with_other_default_branch(tmp_path: Path, work: Path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    git(bare, "branch", "-m", "main", "trunk")
    mirror = Mirror(tmp_path / "m.git", parse_source(str(bare)))
    assert mirror.fetch() == {"trunk": head(work)}
    assert (mirror.path / "HEAD").read_text().strip() == "ref: refs/heads/trunk"
    mirror.close()


def test_fetch_of_a_deleted_source_is_a_clear_error(tmp_path: Path, work: Path) -> None:
    mirror = _mirror(tmp_path, work)
    mirror.fetch()
    for path in sorted(work.rglob("*"), reverse=True):
        path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    with pytest.raises(GitError, match="not a Git repository") as info:
        mirror.fetch()
    assert str(work) in str(info.value)
    mirror.close()


def test_ensure_refuses_a_foreign_directory(tmp_path: Path, work: Path) -> None:
    target = tmp_path / "m.git"
    target.mkdir()
    (target / "notes.txt").write_text("x")
    with pytest.raises(GitError, match="not a bare Git repository"):
        Mirror(target, parse_source(str(work))).ensure()


# --- reading ---------------------------------------------------------------------------------------


def test_new_commits_for_a_push_and_a_force_push(tmp_path: Path, work: Path) -> None:
    mirror = _mirror(tmp_path, work)
    old = mirror.fetch()["main"]
    pushed = [commit(work) for _ in range(3)]
    new = mirror.fetch()["main"]
    assert new == pushed[-1]

    assert mirror.new_commits(old, new) == list(reversed(pushed))  # newest first
    assert mirror.new_commits(old, new, limit=2) == [pushed[2], pushed[1]]
    assert mirror.new_commits(None, new) == [new]
    assert mirror.new_commits(new, new) == []

    git(work, "reset", "-q", "--hard", pushed[0])
    rewritten = commit(work, "other.txt")
    assert mirror.fetch()["main"] == rewritten
    assert mirror.new_commits(new, rewritten) == [rewritten]  # force push: old is no ancestor
    assert mirror.new_commits("0" * 40, rewritten) == [rewritten]  # unknown old
    with pytest.raises(GitError, match="not in the mirror"):
        mirror.new_commits(old, "f" * 40)
    mirror.close()


def test_read_file_present_absent_and_at_older_commit(tmp_path: Path, work: Path) -> None:
    first = head(work)
    second = commit(work, ".buildit.kdl", 'pipeline "demo-2"\n')
    third = commit(work, "ci/nested/pipeline.kdl", "nested\n")
    os.symlink("ci/nested/pipeline.kdl", work / "link.kdl")
    git(work, "add", "link.kdl")
    git(work, "commit", "-q", "-m", "link")
    fourth = head(work)
    mirror = _mirror(tmp_path, work)
    mirror.fetch()

    assert mirror.read_file(first, ".buildit.kdl") == b'pipeline "demo"\n'
    assert mirror.read_file(second, ".buildit.kdl") == b'pipeline "demo-2"\n'
    assert mirror.read_file(third, "ci/nested/pipeline.kdl") == b"nested\n"
    assert mirror.read_file(fourth, "link.kdl") == b"nested\n"  # in-tree symlink followed
    assert mirror.read_file(second, "ci/nested/pipeline.kdl") is None  # not there yet
    assert mirror.read_file(third, "missing.kdl") is None
    assert mirror.read_file(third, "ci") is None  # a directory
    assert mirror.read_file(third, ".buildit.kdl/x") is None  # through a file
    assert mirror.read_file(third, "../etc/passwd") is None
    with pytest.raises(GitError, match="not in the mirror"):
        mirror.read_file("a" * 40, ".buildit.kdl")
    with pytest.raises(GitError, match="not a full commit SHA"):
        mirror.read_file("HEAD", ".buildit.kdl")
    mirror.close()


def test_commit_metadata_and_has_commit(tmp_path: Path, work: Path) -> None:
    sha = commit(work, message="Fix the build\n\nLonger body.\n")
    mirror = _mirror(tmp_path, work)
    mirror.fetch()
    meta = mirror.commit(sha)
    assert meta.sha == sha
    assert meta.message == "Fix the build\n\nLonger body."
    assert meta.author == "Ada Tester <ada@example.test>"
    assert meta.committed_at.tzinfo is not None and meta.committed_at.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - meta.committed_at).total_seconds()) < 120
    assert mirror.has_commit(sha)
    assert not mirror.has_commit("0" * 40)
    assert not mirror.has_commit("not-a-sha")
    tree = git(work, "rev-parse", "HEAD^{tree}").stdout.strip()
    assert not mirror.has_commit(tree)  # an object, but no commit
    mirror.close()


def test_pin_keeps_a_commit_after_force_push(tmp_path: Path, work: Path) -> None:
    mirror = _mirror(tmp_path, work)
    doomed = commit(work)
    mirror.fetch()
    mirror.pin(doomed)
    mirror.pin(doomed)  # idempotent
    git(work, "reset", "-q", "--hard", "HEAD~1")
    commit(work, "other.txt")
    assert mirror.fetch()["main"] != doomed
    assert mirror.has_commit(doomed)
    assert mirror.pins() == [doomed]
    ref = mirror.path / (PIN_PREFIX + doomed)
    assert ref.read_text().strip() == doomed
    with pytest.raises(GitError, match="not in the mirror"):
        mirror.pin("b" * 40)
    mirror.close()


def test_worktree_source(tmp_path: Path) -> None:
    main = init_repo(tmp_path / "main")
    git(main, "worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    source = parse_source(str(tmp_path / "wt"))
    assert source.kind == "local"
    mirror = Mirror(tmp_path / "m.git", source)
    assert mirror.fetch() == {"main": head(main), "wt": head(main)}
    mirror.close()
