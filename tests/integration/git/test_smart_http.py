"""Serving mirrors over smart HTTP (to the real git CLI) and mirroring remote repositories over it."""

from __future__ import annotations

import gzip
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.git.mirror import GitError, Mirror, RepoSource, parse_source, remote_branches
from controller.git.smart_http import UPLOAD_PACK, advertisement, upload_pack

from .conftest import GitHttpServer, commit, git, head, redirecting_server


@pytest.fixture
def served(tmp_path: Path, work: Path, http_server: GitHttpServer) -> Iterator[tuple[Mirror, str]]:
    """A mirror of `work`, fetched, served as <server>/x.git."""
    mirror = Mirror(tmp_path / "mirrors" / "x.git", parse_source(str(work)))
    mirror.fetch()
    http_server.repos["x.git"] = mirror.path
    yield mirror, f"{http_server.url}/x.git"
    mirror.close()


def _objects(repo: Path) -> tuple[int, int]:
    stats = dict(line.split(": ") for line in git(repo, "count-objects", "-v").stdout.splitlines())
    return int(stats["count"]), int(stats["in-pack"])


def test_advertisement_and_read_only(served: tuple[Mirror, str]) -> None:
    mirror, _ = served
    content_type, body = advertisement(mirror.path, UPLOAD_PACK)
    assert content_type == "application/x-git-upload-pack-advertisement"
    assert body.startswith(b"001e# service=git-upload-pack\n0000")
    assert mirror.branches()["main"].encode() in body
    assert body.endswith(b"0000")
    with pytest.raises(GitError, match="read-only"):
        advertisement(mirror.path, "git-receive-pack")
    with pytest.raises(GitError, match="no mirror at"):
        advertisement(mirror.path.parent / "missing.git", UPLOAD_PACK)


def test_clone_then_incremental_fetch_sends_only_new_objects(
    tmp_path: Path, work: Path, served: tuple[Mirror, str], http_server: GitHttpServer
) -> None:
    mirror, url = served
    for _ in range(5):
        commit(work)
    mirror.fetch()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", url, str(clone))
    assert head(clone) == head(work)
    assert (clone / ".buildit.kdl").read_text() == 'pipeline "demo"\n'
    assert http_server.pack_object_counts == [18]  # 6 commits, 6 trees, 6 blobs

    new = commit(work, "new.txt", "brand new\n")
    mirror.fetch()
    http_server.requests.clear()
    git(clone, "fetch", "-q", "origin")
    assert head(clone, "origin/main") == new
    # Only the new commit, its tree and its blob came over: the clone's haves were used.
    assert http_server.pack_object_counts == [18, 3]
    assert [method for method, _ in http_server.requests] == ["GET", "POST"]
    assert sum(_objects(clone)) == 21


def test_fetch_pinned_commit_by_sha_after_force_push(
    tmp_path: Path, work: Path, served: tuple[Mirror, str]
) -> None:
    mirror, url = served
    pinned = commit(work, message="will be force-pushed away")
    unpinned = commit(work, message="also gone, not pinned")
    mirror.fetch()
    mirror.pin(pinned)
    git(work, "reset", "-q", "--hard", "HEAD~2")
    commit(work, "rewrite.txt")
    mirror.fetch()
    assert pinned not in mirror.branches().values()

    agent = tmp_path / "agent"
    agent.mkdir()
    git(agent, "init", "-q")
    git(agent, "fetch", "-q", "--depth=1", url, pinned)  # how an agent fetches a run's commit
    git(agent, "checkout", "-q", "FETCH_HEAD")
    assert head(agent) == pinned
    git(agent, "fetch", "-q", url, f"refs/buildit/pins/{pinned}")
    assert head(agent, "FETCH_HEAD") == pinned

    refused = git(agent, "fetch", "-q", url, unpinned, check=False)
    assert refused.returncode != 0
    assert "not our ref" in refused.stderr or "unadvertised object" in refused.stderr

    clone = tmp_path / "clone"  # a full clone still works next to the pins
    git(tmp_path, "clone", "-q", url, str(clone))
    assert head(clone) == head(work)


def test_upload_pack_accepts_gzip_and_reports_bad_wants(served: tuple[Mirror, str]) -> None:
    mirror, _ = served
    sha = mirror.branches()["main"]
    caps = "multi_ack_detailed side-band-64k thin-pack ofs-delta agent=git/2.39"
    request = (f"{len(sha) + len(caps) + 11:04x}want {sha} {caps}\n" + "00000009done\n").encode()
    content_type, plain = upload_pack(mirror.path, request)
    assert content_type == "application/x-git-upload-pack-result"
    assert b"PACK" in plain
    assert upload_pack(mirror.path, gzip.compress(request), "gzip")[1] == plain

    bad = request.replace(sha.encode(), b"e" * 40)
    _, refused = upload_pack(mirror.path, bad)
    assert refused.startswith(b"00") and b"ERR upload-pack: not our ref " + b"e" * 40 in refused
    with pytest.raises(GitError, match="not valid gzip"):
        upload_pack(mirror.path, b"not gzip", "gzip")


def test_a_mirror_serves_from_its_open_repository_and_sees_what_it_fetches_next(
    work: Path, served: tuple[Mirror, str]
) -> None:
    mirror, _ = served
    caps = "side-band-64k thin-pack ofs-delta no-progress"

    def request(sha: str) -> bytes:
        return (f"{len(sha) + len(caps) + 11:04x}want {sha} {caps}\n" + "00000009done\n").encode()

    first = mirror.branches()["main"]
    assert upload_pack(mirror, request(first)) == upload_pack(mirror.path, request(first))
    assert advertisement(mirror, UPLOAD_PACK) == advertisement(mirror.path, UPLOAD_PACK)
    # The open repository serves a commit fetched after it was opened, and keeps working after the
    # mirror merged its packs and reopened.
    second = commit(work)
    mirror.fetch()
    _, served_second = upload_pack(mirror, request(second))
    assert b"PACK" in served_second and b"ERR" not in served_second
    for _ in range(10):
        commit(work)
        mirror.fetch()
    assert mirror.maintain(max_packs=2)
    _, after_repack = upload_pack(mirror, request(mirror.branches()["main"]))
    assert b"PACK" in after_repack and b"ERR" not in after_repack


def test_mirror_a_remote_repository_over_http(
    tmp_path: Path, work: Path, served: tuple[Mirror, str], http_server: GitHttpServer
) -> None:
    _, url = served
    source = parse_source(url)
    assert source.kind == "remote"
    assert remote_branches(source) == {"main": head(work)}

    downstream = Mirror(tmp_path / "downstream.git", source)
    assert downstream.fetch() == {"main": head(work)}
    assert (downstream.path / "HEAD").read_text().strip() == "ref: refs/heads/main"

    http_server.requests.clear()
    assert downstream.fetch() == {"main": head(work)}
    assert [method for method, _ in http_server.requests] == ["GET"]  # nothing new: refs only

    first_mirror = served[0]
    new = commit(work)
    git(work, "branch", "topic")
    first_mirror.fetch()
    assert downstream.fetch() == {"main": new, "topic": new}
    assert downstream.read_file(new, ".buildit.kdl") == b'pipeline "demo"\n'
    downstream.close()


def test_a_commit_named_by_a_webhook_is_fetched_in_one_request(
    tmp_path: Path, work: Path, served: tuple[Mirror, str], http_server: GitHttpServer
) -> None:
    first_mirror, url = served
    downstream = Mirror(tmp_path / "downstream.git", parse_source(url))
    downstream.fetch()
    new = commit(work)
    first_mirror.fetch()

    http_server.requests.clear()
    assert downstream.fetch_commit("main", new) == {"main": new}
    assert [method for method, _ in http_server.requests] == ["POST"]  # no ref advertisement
    assert downstream.read_file(new, ".buildit.kdl") == b'pipeline "demo"\n'
    newer = commit(work)  # again, now negotiating with a common commit
    first_mirror.fetch()
    assert downstream.fetch_commit("main", newer) == {"main": newer}
    new = newer
    # A new branch at a commit the mirror already has: no request at all.
    http_server.requests.clear()
    assert downstream.fetch_commit("topic", new) == {"main": new, "topic": new}
    assert http_server.requests == []

    # A commit the server does not have, or a source that is not HTTP: GitError, nothing changed.
    with pytest.raises(GitError):
        downstream.fetch_commit("main", "e" * 40)
    assert downstream.branches() == {"main": new, "topic": new}
    local = Mirror(tmp_path / "local.git", parse_source(str(work)))
    with pytest.raises(GitError, match="http"):
        local.fetch_commit("main", new)
    with pytest.raises(GitError, match="not a commit id"):
        downstream.fetch_commit("main", "HEAD")
    downstream.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_remote_fails_fast_without_leaking_credentials(tmp_path: Path) -> None:
    port = _closed_port()
    for url in (f"http://127.0.0.1:{port}/x.git", f"http://alice:s3cr3t-pw@127.0.0.1:{port}/x.git"):
        mirror = Mirror(tmp_path / "m.git", RepoSource("remote", url))
        started = time.monotonic()
        with pytest.raises(GitError) as info:
            mirror.fetch()
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert "cannot connect (Connection refused)" in message
        assert f"127.0.0.1:{port}/x.git" in message
        assert "s3cr3t" not in message and "alice" not in message
        with pytest.raises(GitError, match=r"listing branches of .*cannot connect"):
            remote_branches(RepoSource("remote", url))
        mirror.close()
    assert "***@127.0.0.1" in message


@pytest.mark.parametrize("scheme", ["git", "ssh"])
def test_unreachable_git_and_ssh_remotes(scheme: str) -> None:
    if scheme == "ssh" and shutil.which("ssh") is None:
        pytest.skip("no ssh client installed")
    url = f"{scheme}://git@127.0.0.1:{_closed_port()}/x.git"
    with pytest.raises(GitError, match=r"cannot connect \(.*Connection refused\)"):
        remote_branches(RepoSource("remote", url))


def test_remote_errors_404_and_401(tmp_path: Path, http_server: GitHttpServer) -> None:
    missing = Mirror(tmp_path / "a.git", RepoSource("remote", f"{http_server.url}/nope.git"))
    with pytest.raises(GitError, match="no Git repository at that URL"):
        missing.fetch()
    missing.close()

    http_server.reject_auth = True
    url = http_server.url.replace("http://", "http://bob:hunter2@") + "/x.git"
    denied = Mirror(tmp_path / "b.git", RepoSource("remote", url))
    with pytest.raises(GitError, match=r"wants credentials \(HTTP 401\)") as info:
        denied.fetch()
    assert "hunter2" not in str(info.value) and "bob" not in str(info.value)
    assert "http://***@127.0.0.1" in str(info.value)
    denied.close()


def test_a_redirect_is_not_followed(
    tmp_path: Path, served: tuple[Mirror, str], http_server: GitHttpServer
) -> None:
    # Who may register which host is checked on the URL as given: a redirect (here from a server
    # that holds nothing to one that has the repository) would fetch a URL nobody checked.
    _, target = served
    moved = http_server.url
    with redirecting_server(moved) as (source, requests):
        mirror = Mirror(tmp_path / "m.git", RepoSource("remote", f"{source}/x.git"))
        http_server.requests.clear()
        with pytest.raises(GitError, match="answered with a redirect; the controller follows none") as info:
            mirror.fetch()
        assert "register the URL it redirects to" in str(info.value)
        with pytest.raises(GitError, match="redirect"):
            mirror.fetch_commit("main", "a" * 40)
        mirror.close()
        assert requests and http_server.requests == []  # the target was never asked
    assert target.startswith(moved)
