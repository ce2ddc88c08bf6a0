"""agent.git.fetch against a real smart-HTTP server (git http-backend) on 127.0.0.1, real git repositories."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.contract.types import WorkspaceSource
from agent.git.fetch import PIN_PREFIX, GitFetcher, GitFetchError, cache_dir_for
from tests.integration.agent.git_server import GitHttpServer, Upstream, git

pytestmark = pytest.mark.timeout(60)

TOKEN = "agent-token-5f2c9e0d7a41b3c8"
# `upstream` (a work repository and the bare one served) comes from tests/integration/agent/conftest.py.


def serve(root: Path, *, protocol_v2: bool = True, token: str = TOKEN) -> Iterator[GitHttpServer]:
    server = GitHttpServer(root, lambda given: given == token, protocol_v2=protocol_v2).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(upstream: Upstream) -> Iterator[GitHttpServer]:
    yield from serve(upstream.bare.parent)


@pytest.fixture
def v0_server(upstream: Upstream) -> Iterator[GitHttpServer]:
    yield from serve(upstream.bare.parent, protocol_v2=False)


def object_count(repo: Path) -> int:
    """Distinct objects (a kept thin pack may repeat a few base objects; they count once)."""
    return len(git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)").split())


async def test_checks_out_the_exact_commit_after_the_branch_moved_on(
    tmp_path: Path, upstream: Upstream, server: GitHttpServer
) -> None:
    first = upstream.commit("app.txt", "version 1\n")
    upstream.commit("app.txt", "version 2\n")  # main moved on
    fetcher = GitFetcher(tmp_path / "state")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    said: list[str] = []
    url = server.url("project.git")
    got = await fetcher.checkout(
        WorkspaceSource(url, first, "refs/heads/main"), workspace, TOKEN, said.append
    )
    assert got == first
    assert (workspace / "app.txt").read_text() == "version 1\n"
    # A real work tree: detached HEAD at the commit, clean, with its history and objects present.
    assert git(workspace, "rev-parse", "HEAD") == first
    assert subprocess.run(["git", "-C", str(workspace), "symbolic-ref", "-q", "HEAD"]).returncode == 1
    assert git(workspace, "status", "--porcelain") == ""
    assert git(workspace, "log", "--format=%s") == "change app.txt"
    assert git(workspace, "remote", "get-url", "origin") == url
    borrowed = fetcher.borrowed_objects(WorkspaceSource(url, first))
    assert (workspace / ".git/objects/info/alternates").read_text() == f"{borrowed}\n"
    assert borrowed.is_dir() and borrowed.is_relative_to((tmp_path / "state").resolve())
    assert said == [f"fetching commit {first[:12]} from {url}", f"checked out {first[:12]} (detached HEAD)"]
    assert server.token_in_argv == []
    # One request: the agent knows the commit it wants, so it skips the ref advertisement.
    assert [method for method, _ in server.requests] == ["POST"]


async def test_second_fetch_is_incremental_and_a_cached_commit_needs_no_network(
    tmp_path: Path, upstream: Upstream, server: GitHttpServer
) -> None:
    for index in range(30):
        (upstream.work / f"file-{index}.txt").write_text(f"content {index}\n" * 50)
    first = upstream.commit("app.txt", "v1\n")
    state = tmp_path / "state"
    fetcher = GitFetcher(state)
    source = WorkspaceSource(server.url("project.git"), first)
    (tmp_path / "ws1").mkdir()
    await fetcher.checkout(source, tmp_path / "ws1", TOKEN)
    cache = cache_dir_for(state, source.repo_url)
    assert [p.name for p in (state / "git-cache").iterdir()] == [cache.name]
    after_first = object_count(cache)
    assert after_first >= 33  # 30 files + app.txt + tree + commit
    negotiations = server.upload_pack_requests()

    # The same commit again (another stage of the run): served from the cache, no request at all.
    requests = len(server.requests)
    (tmp_path / "ws2").mkdir()
    said: list[str] = []
    await fetcher.checkout(source, tmp_path / "ws2", TOKEN, said.append)
    assert len(server.requests) == requests
    assert said[0] == f"commit {first[:12]} of {source.repo_url} is in the agent's git cache"
    assert (tmp_path / "ws2" / "file-7.txt").read_text() == "content 7\n" * 50

    # A new commit: only its new objects travel (a commit, a tree, a blob), into the same cache.
    second = upstream.commit("app.txt", "v2\n")
    (tmp_path / "ws3").mkdir()
    await fetcher.checkout(WorkspaceSource(source.repo_url, second), tmp_path / "ws3", TOKEN)
    assert server.upload_pack_requests() > negotiations
    assert object_count(cache) == after_first + 3
    assert (tmp_path / "ws3" / "app.txt").read_text() == "v2\n"
    assert [p.name for p in (state / "git-cache").iterdir()] == [cache.name]


async def test_locks_left_by_a_killed_fetch_do_not_break_the_next_one(
    tmp_path: Path, upstream: Upstream, server: GitHttpServer
) -> None:
    first = upstream.commit("a.txt", "a\n")
    second = upstream.commit("b.txt", "b\n")
    state = tmp_path / "state"
    url = server.url("project.git")
    (tmp_path / "ws1").mkdir()
    await GitFetcher(state).checkout(WorkspaceSource(url, first), tmp_path / "ws1", TOKEN)
    cache = cache_dir_for(state, url)
    # What git leaves behind when it is killed mid-fetch (the agent crashed, the stage timed out).
    (cache / "refs" / "buildit" / "fetched" / f"{second}.lock").write_text("")
    (cache / "shallow.lock").write_text("")
    (tmp_path / "ws2").mkdir()
    await GitFetcher(state).checkout(WorkspaceSource(url, second), tmp_path / "ws2", TOKEN)
    assert (tmp_path / "ws2" / "b.txt").read_text() == "b\n"
    assert list(cache.rglob("*.lock")) == []


async def test_concurrent_stages_of_one_repository_share_the_cache(
    tmp_path: Path, upstream: Upstream, server: GitHttpServer
) -> None:
    first = upstream.commit("a.txt", "a\n")
    second = upstream.commit("b.txt", "b\n")
    fetcher = GitFetcher(tmp_path / "state")
    url = server.url("project.git")
    jobs = []
    for index, sha in enumerate([first, second, first, second]):
        workspace = tmp_path / f"ws{index}"
        workspace.mkdir()
        jobs.append(fetcher.checkout(WorkspaceSource(url, sha), workspace, TOKEN))
    assert await asyncio.gather(*jobs) == [first, second, first, second]
    assert not (tmp_path / "ws0" / "b.txt").exists()
    assert (tmp_path / "ws1" / "b.txt").read_text() == "b\n"
    assert len(list((tmp_path / "state" / "git-cache").iterdir())) == 1


async def test_a_v0_server_serves_a_pinned_commit_no_branch_points_at(
    tmp_path: Path, upstream: Upstream, v0_server: GitHttpServer
) -> None:
    first = upstream.commit("app.txt", "v1\n")
    upstream.commit("app.txt", "v2\n")
    upstream.pin(first)
    (tmp_path / "ws").mkdir()
    fetcher = GitFetcher(tmp_path / "state")
    await fetcher.checkout(WorkspaceSource(v0_server.url("project.git"), first), tmp_path / "ws", TOKEN)
    assert (tmp_path / "ws" / "app.txt").read_text() == "v1\n"
    assert git(tmp_path / "ws", "rev-parse", "HEAD") == first


async def test_an_unpinned_commit_a_v0_server_refuses_by_id_is_asked_for_by_pin_then_reported(
    tmp_path: Path, upstream: Upstream, v0_server: GitHttpServer
) -> None:
    first = upstream.commit("app.txt", "v1\n")
    # History rewritten: `first` is no tip and reachable from no ref, so protocol v0 refuses it by id
    # (a reachable commit would be served: stateless upload-pack accepts reachable wants).
    git(upstream.work, "checkout", "-q", "--orphan", "rewritten")
    git(upstream.work, "commit", "-q", "-m", "rewritten")
    git(upstream.work, "push", "-q", "--force", str(upstream.bare), "HEAD:refs/heads/main")
    (tmp_path / "ws").mkdir()
    url = v0_server.url("project.git")
    with pytest.raises(GitFetchError) as failed:
        await GitFetcher(tmp_path / "state").checkout(WorkspaceSource(url, first), tmp_path / "ws", TOKEN)
    message = str(failed.value)
    assert message.startswith(f"commit {first} not found in {url} (the server refused it by id: ")
    assert message.endswith(f"and has no {PIN_PREFIX}{first}); was the repository rewritten?")
    assert "\n" not in message and TOKEN not in message
    # The one-request fetch was refused (ERR) and left nothing behind in the cache.
    cache = cache_dir_for(tmp_path / "state", url)
    assert list((cache / "objects" / "pack").glob("*")) == []
    # Then `git fetch`, with two attempts: the commit by id, then the pin ref.
    assert (
        sum(1 for method, path in v0_server.requests if path.endswith("info/refs?service=git-upload-pack"))
        == 2
    )


async def test_a_commit_the_server_does_not_have_is_a_clear_error(
    tmp_path: Path, upstream: Upstream, v0_server: GitHttpServer
) -> None:
    upstream.commit("app.txt", "v1\n")
    missing = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "ws").mkdir()
    url = v0_server.url("project.git")
    with pytest.raises(GitFetchError) as failed:
        await GitFetcher(tmp_path / "state").checkout(WorkspaceSource(url, missing), tmp_path / "ws", TOKEN)
    message = str(failed.value)
    assert message.startswith(f"commit {missing} not found in {url}")
    assert f"{PIN_PREFIX}{missing}" in message
    assert "\n" not in message and TOKEN not in message


async def test_a_wrong_token_is_refused_without_showing_it(
    tmp_path: Path, upstream: Upstream, server: GitHttpServer
) -> None:
    sha = upstream.commit("app.txt", "v1\n")
    (tmp_path / "ws").mkdir()
    url = server.url("project.git")
    wrong = "wrong-token-0b9d8e7f6a5c4b3a"
    with pytest.raises(GitFetchError) as failed:
        await GitFetcher(tmp_path / "state").checkout(WorkspaceSource(url, sha), tmp_path / "ws", wrong)
    message = str(failed.value)
    assert message == f"cannot fetch commit {sha} from {url}: the server refused the agent's token (HTTP 401)"
    assert wrong not in message and TOKEN not in message
    assert server.token_in_argv == []
    assert list((tmp_path / "ws").iterdir()) == []


async def test_credentials_in_the_url_are_not_shown(
    tmp_path: Path, upstream: Upstream, server: GitHttpServer
) -> None:
    sha = upstream.commit("app.txt", "v1\n")
    (tmp_path / "ws").mkdir()
    url = server.url("project.git").replace("http://", "http://user:hunter2@")
    with pytest.raises(GitFetchError) as failed:
        await GitFetcher(tmp_path / "state").checkout(WorkspaceSource(url, sha), tmp_path / "ws", "nope")
    assert "hunter2" not in str(failed.value) and "user" not in str(failed.value)
    assert server.url("project.git") in str(failed.value)


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/project.git"
    sha = "a" * 40
    (tmp_path / "ws").mkdir()
    with pytest.raises(GitFetchError) as failed:
        await GitFetcher(tmp_path / "state").checkout(WorkspaceSource(url, sha), tmp_path / "ws", TOKEN)
    message = str(failed.value)
    assert message.startswith(f"cannot fetch commit {sha} from {url}: ")
    assert "connect" in message.lower()
    assert TOKEN not in message


async def test_a_fetch_that_takes_too_long_is_stopped(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/project.git"
        fetcher = GitFetcher(tmp_path / "state", timeout_s=1.0)
        (tmp_path / "ws").mkdir()
        with pytest.raises(GitFetchError) as failed:
            await fetcher.checkout(WorkspaceSource(url, "b" * 40), tmp_path / "ws", TOKEN)
    assert str(failed.value) == f"cannot fetch commit {'b' * 40} from {url}: timed out after 1s"


@pytest.mark.parametrize(
    ("url", "sha", "expected"),
    [
        ("http://127.0.0.1:1/r.git", "main", "commit 'main' is not a full hex commit id"),
        ("http://127.0.0.1:1/r.git", "abc123", "commit 'abc123' is not a full hex commit id"),
        ("ext::sh -c touch% /tmp/pwned", "c" * 40, "must be http:// or https://"),
        ("file:///srv/repo.git", "c" * 40, "must be http:// or https://"),
        ("", "c" * 40, "<empty URL>: the repository URL must be http:// or https://"),
    ],
)
async def test_bad_sources_are_refused_before_running_git(
    tmp_path: Path, url: str, sha: str, expected: str
) -> None:
    (tmp_path / "ws").mkdir()
    with pytest.raises(GitFetchError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        await GitFetcher(tmp_path / "state").checkout(WorkspaceSource(url, sha), tmp_path / "ws", TOKEN)
    assert not (tmp_path / "state" / "git-cache").exists()


async def test_missing_git_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    (tmp_path / "ws").mkdir()
    with pytest.raises(GitFetchError, match=r"git command is not installed .* install git"):
        await GitFetcher(tmp_path / "state").checkout(
            WorkspaceSource("http://127.0.0.1:1/r.git", "d" * 40), tmp_path / "ws", TOKEN
        )
