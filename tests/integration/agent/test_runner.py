"""The agent runtime against a fake controller over real gRPC on 127.0.0.1, with real processes.

Most tests run `Agent` in the test's event loop (fast, and the fake's records can be inspected
at any moment); the process tests run `python -m agent.cli` as a child process to check what only a
process shows: signals, exit statuses, the one-line errors, and which modules an idle agent loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract.types import CancelReason, StageSpec, StageStatus, WorkspaceSource
from agent.errors import AgentExit
from agent.executors.registry import Executors, build_executors
from agent.logs import MAX_CHUNK_LINES
from agent.runner import Agent
from agent.settings import AgentSettings
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.git_server import GitHttpServer, Upstream, git

pytestmark = pytest.mark.timeout(60)


def spec(*commands: str, **kw: Any) -> StageSpec:
    return StageSpec(name=kw.pop("name", "stage"), index=0, commands=commands, **kw)


@pytest.fixture
async def fake() -> AsyncIterator[FakeController]:
    controller = FakeController()
    await controller.start()
    try:
        yield controller
    finally:
        await controller.stop()


@contextlib.asynccontextmanager
async def running_agent(
    fake: FakeController, state_dir: Path, executors: Executors | None = None, **kw: Any
) -> AsyncIterator[tuple[Agent, asyncio.Task[int]]]:
    """An Agent serving `fake`; stopped (not drained) on exit unless the test ended it."""
    settings = AgentSettings(
        controller=fake.address,
        registration_token=kw.pop("registration_token", "enrol"),
        name=kw.pop("name", "test-agent"),
        state_dir=state_dir,
        **kw,
    )
    agent = Agent(settings, executors or build_executors("local"))
    task = asyncio.create_task(agent.run())
    try:
        yield agent, task
    finally:
        if not task.done():
            agent.stop()
        with contextlib.suppress(AgentExit):
            await asyncio.wait_for(task, 15)


async def serving(fake: FakeController, count: int = 1) -> None:
    await fake.wait_for(
        lambda: fake.lease_stream_open and fake.lease_streams_opened >= count, what="the lease stream"
    )


def assert_log_stream_clean(fake: FakeController, lease_id: str) -> None:
    """Contiguous seqs 1..n were stored (the fake stores only seq == last + 1)."""
    sent = sorted({seq for lease, seq in fake.chunks_received if lease == lease_id})
    assert sent == list(range(1, len(sent) + 1))
    assert fake.stored_seq.get(lease_id, 0) == len(sent)


# --- registration and identity -------------------------------------------------------------------------


async def test_registers_once_stores_token_0600_and_reuses_it(fake: FakeController, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    async with running_agent(fake, state_dir, labels={"arch": "amd64"}, capacity=3) as (agent, task):
        await serving(fake)
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0
    [registration] = fake.registrations
    assert registration.name == "test-agent"
    assert dict(registration.labels) == {"arch": "amd64"}
    assert list(registration.executors) == ["local"]
    assert registration.capacity == 3
    assert registration.version == "0.1.0"
    state_file = state_dir / "agent.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    saved = json.loads(state_file.read_text())
    assert saved["agent_id"] == "agent-1"
    assert saved["controller"] == fake.address
    assert fake.tokens[saved["agent_token"]] == "agent-1"
    # No temporary file left behind (agent.lock is the one-agent-per-state-dir lock).
    assert sorted(p.name for p in state_dir.iterdir()) == ["agent.json", "agent.lock"]

    # A restart reuses the stored identity: no second Register, same agent id and token.
    async with running_agent(fake, state_dir) as (agent, task):
        await serving(fake, 2)
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0
    assert len(fake.registrations) == 1
    assert [r.agent_id for r in fake.lease_requests] == ["agent-1", "agent-1"]
    assert fake.lease_metadata[-1] == f"Bearer {saved['agent_token']}"
    assert fake.heartbeats[-1].draining  # a drained agent says so


async def test_unknown_token_reregisters_once_with_the_registration_token(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (agent, task):
        await serving(fake)
        fake.forget_tokens()
        await fake.wait_for(lambda: len(fake.registrations) == 2, what="a second registration")
        await serving(fake, 2)
        assert fake.lease_requests[-1].agent_id == "agent-2"
        lease = fake.push_lease(spec("echo after re-registration"))
        await fake.wait_for(lambda: fake.final_update(lease))
        assert json.loads((tmp_path / "agent.json").read_text())["agent_id"] == "agent-2"
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0


async def test_unknown_token_without_registration_token_exits_1(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
    fake.forget_tokens()
    async with running_agent(fake, tmp_path, registration_token="") as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "does not accept the agent token" in refused.value.message
    assert "--registration-token" in refused.value.message


async def test_no_token_and_no_registration_token_is_bad_input(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path, registration_token="") as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 2
    assert fake.registrations == []


async def test_one_agent_per_state_dir_and_stale_workspaces_are_removed(
    fake: FakeController, tmp_path: Path
) -> None:
    stale = tmp_path / "work" / "lease-from-a-crashed-agent"
    stale.mkdir(parents=True)
    (stale / "file").write_text("left behind")
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        assert not stale.exists()
        async with running_agent(fake, tmp_path) as (_second, second_task):
            with pytest.raises(AgentExit) as refused:
                await asyncio.wait_for(second_task, 5)
    assert refused.value.code == 2
    assert "in use by another agent" in refused.value.message
    assert len(fake.registrations) == 1


async def test_version_mismatch_is_refused_with_both_versions(fake: FakeController, tmp_path: Path) -> None:
    fake.accepted_versions = {"9.9.9"}
    async with running_agent(fake, tmp_path) as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "0.1.0" in refused.value.message and "refused agent version" in refused.value.message


async def test_registration_retries_server_errors_and_exits_on_a_refusal(
    fake: FakeController, tmp_path: Path
) -> None:
    # INTERNAL and UNKNOWN are a controller's unexpected errors: retried, like an unreachable one.
    fake.failures["Register"] = [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN]
    async with running_agent(fake, tmp_path / "a") as (agent, task):
        await serving(fake)
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0
    assert len(fake.registrations) == 3
    # PERMISSION_DENIED: this agent is not allowed; asking again cannot help.
    fake.failures["Register"] = [grpc.StatusCode.PERMISSION_DENIED]
    async with running_agent(fake, tmp_path / "b") as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "registration with" in refused.value.message and "PERMISSION_DENIED" in refused.value.message
    assert len(fake.registrations) == 4


async def test_a_refused_lease_stream_ends_the_agent_without_registering_again(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.failures["Lease"] = [grpc.StatusCode.PERMISSION_DENIED]
    async with running_agent(fake, tmp_path) as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "Lease stream" in refused.value.message and "PERMISSION_DENIED" in refused.value.message
    assert len(fake.registrations) == 1


# --- running stages ------------------------------------------------------------------------------------


async def test_stage_runs_logs_arrive_in_order_and_final_update_follows_the_acks(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.ack_delay_s = 0.02
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec("for i in $(seq 1 2500); do echo line $i; done", "echo last; echo to-stderr >&2")
        )
        await fake.wait_for(lambda: fake.final_update(lease), what="the final update")

    expected = [
        "$ for i in $(seq 1 2500); do echo line $i; done",
        *(f"line {i}" for i in range(1, 2501)),
        "$ echo last; echo to-stderr >&2",
        "last",
        "to-stderr",
    ]
    assert fake.lines(lease) == expected
    assert_log_stream_clean(fake, lease)
    assert sum(fake.stored_chunk_sizes[lease]) == len(expected)
    assert max(fake.stored_chunk_sizes[lease]) <= MAX_CHUNK_LINES
    assert fake.updates_for(lease) == [StageStatus.RUNNING, StageStatus.SUCCEEDED]
    running, final = [u for u in fake.updates if u.lease_id == lease]
    assert running.has_started_at and not running.has_finished_at
    assert final.exit_code == 0 and final.has_started_at and final.has_finished_at
    # RUNNING before any chunk; the terminal update only after the last chunk was acknowledged.
    events = [(kind, seq) for kind, lid, seq in fake.timeline if lid == lease]
    last_seq = fake.stored_seq[lease]
    assert events[0] == ("update", StageStatus.RUNNING)
    assert events.index(("update", StageStatus.SUCCEEDED)) > events.index(("ack", last_seq))
    assert not (tmp_path / "work" / lease).exists()  # the workspace is removed afterwards


async def test_failing_command_reports_failed_with_its_exit_code(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("echo before", "exit 3", "echo never"))
        await fake.wait_for(lambda: fake.final_update(lease))
    final = fake.final_update(lease)
    assert final is not None
    assert (final.status, final.exit_code) == (StageStatus.FAILED, 3)
    assert fake.lines(lease) == ["$ echo before", "before", "$ exit 3"]


async def test_stage_runs_in_a_fresh_workspace_under_the_state_dir(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("pwd", "ls -A | wc -l", "mkdir -p sub && touch sub/x"))
        await fake.wait_for(lambda: fake.final_update(lease))
    assert fake.lines(lease)[1] == str((tmp_path / "work" / lease).resolve())
    assert fake.lines(lease)[3].strip() == "0"
    assert not (tmp_path / "work" / lease).exists()


async def test_capacity_is_respected(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path, capacity=1) as (agent, _task):
        await serving(fake)
        assert fake.lease_requests[-1].free_slots == 1
        first = fake.push_lease(spec("sleep 0.4", "echo first done"))
        second = fake.push_lease(spec("echo second"))
        await fake.wait_for(lambda: fake.final_update(second), what="both stages")
        # The slot frees once the stage's clean-up after its final update is done.
        await fake.wait_for(lambda: agent.free_slots == 1, what="the slot to free")
    order = [(lid, status) for kind, lid, status in fake.timeline if kind == "update"]
    assert order == [
        (first, StageStatus.RUNNING),
        (first, StageStatus.SUCCEEDED),
        (second, StageStatus.RUNNING),
        (second, StageStatus.SUCCEEDED),
    ]
    # While the first ran, the heartbeat said the agent was full and listed both leases.
    assert any(h.free_slots == 0 and set(h.running_lease_ids) == {first, second} for h in fake.heartbeats)


async def test_cancel_kills_a_running_stage_within_a_second(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("echo started", "sleep 30"))
        await fake.wait_for(lambda: "$ sleep 30" in fake.lines(lease), what="sleep to start")
        cancelled_at = time.monotonic()
        fake.push_cancel(lease, CancelReason.USER, "cancelled by ada")
        await fake.wait_for(lambda: fake.final_update(lease), timeout=5)
        took = time.monotonic() - cancelled_at
    final = fake.final_update(lease)
    assert final is not None
    assert final.status is StageStatus.CANCELLED
    assert final.message == "cancelled by ada"
    assert took < 1.0, f"cancel took {took:.2f}s"


async def test_timeout_cancel_reports_timed_out(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("sleep 30"))
        await fake.wait_for(lambda: fake.lines(lease))
        fake.push_cancel(lease, CancelReason.TIMEOUT, "timed out after 60s")
        await fake.wait_for(lambda: fake.final_update(lease), timeout=5)
    final = fake.final_update(lease)
    assert final is not None and (final.status, final.message) == (
        StageStatus.TIMED_OUT,
        "timed out after 60s",
    )


async def test_cancel_requested_through_extend_lease(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("sleep 30"))
        await fake.wait_for(lambda: fake.lines(lease))
        fake.cancel_on_extend[lease] = CancelReason.USER
        await fake.wait_for(lambda: fake.final_update(lease), timeout=5)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.CANCELLED


async def test_secrets_are_masked_in_shipped_logs(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec('echo "token is $TOKEN"', 'echo "$TOKEN$TOKEN"', secrets={"TOKEN": "s3cr3t-value"})
        )
        await fake.wait_for(lambda: fake.final_update(lease))
    lines = fake.lines(lease)
    assert lines == ['$ echo "token is $TOKEN"', "token is ***", '$ echo "$TOKEN$TOKEN"', "******"]
    assert not any("s3cr3t" in line for line in lines)


# --- workspaces from Git ---------------------------------------------------------------------------


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    work = tmp_path / "upstream-work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    served = tmp_path / "served"
    served.mkdir()
    bare = served / "project.git"
    git(served, "init", "-q", "--bare", str(bare))
    return Upstream(work, bare)


@pytest.fixture
def git_server(upstream: Upstream, fake: FakeController) -> Iterator[GitHttpServer]:
    """Serves `upstream` to agents the fake controller issued a token to (as the controller will)."""
    server = GitHttpServer(upstream.bare.parent, lambda token: token in fake.tokens).start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_stage_with_a_source_runs_in_a_checkout_of_its_commit(
    fake: FakeController, tmp_path: Path, upstream: Upstream, git_server: GitHttpServer
) -> None:
    first = upstream.commit("app.txt", "version 1")
    upstream.commit("app.txt", "version 2")
    url = git_server.url("project.git")
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec(
                "cat app.txt; echo",
                "git rev-parse HEAD",
                "test -s .git/objects/info/alternates && echo borrows the cache",
                source=WorkspaceSource(url, first, "refs/heads/main"),
            )
        )
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, final
    assert fake.lines(lease) == [
        f"fetching commit {first[:12]} from {url}",
        f"checked out {first[:12]} (detached HEAD)",
        "$ cat app.txt; echo",
        "version 1",
        "$ git rev-parse HEAD",
        first,
        "$ test -s .git/objects/info/alternates && echo borrows the cache",
        "borrows the cache",
    ]
    assert git_server.token_in_argv == []
    assert list((tmp_path / "state" / "work").iterdir()) == []  # the workspace is removed
    assert len(list((tmp_path / "state" / "git-cache").iterdir())) == 1  # the cache stays
    [token] = fake.tokens
    for directory in ("git-cache", "git-home"):  # the token is never written down by git
        for file in (tmp_path / "state" / directory).rglob("*"):
            assert not file.is_file() or token.encode() not in file.read_bytes(), file


async def test_a_source_the_server_refuses_ends_the_stage_in_error_without_the_token(
    fake: FakeController, tmp_path: Path, upstream: Upstream
) -> None:
    sha = upstream.commit("app.txt", "v1")
    server = GitHttpServer(upstream.bare.parent, lambda token: False).start()  # no token is good enough
    marker = tmp_path / "ran"
    try:
        async with running_agent(fake, tmp_path / "state") as (_agent, _task):
            await serving(fake)
            url = server.url("project.git")
            lease = fake.push_lease(spec(f"touch {marker}", source=WorkspaceSource(url, sha)))
            await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    finally:
        server.stop()
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert (
        final.message
        == f"cannot fetch commit {sha} from {url}: the server refused the agent's token (HTTP 401)"
    )
    [token] = fake.tokens
    assert token not in final.message
    assert not any(token in line for line in fake.lines(lease))
    assert fake.lines(lease)[-1] == f"error: {final.message}"
    assert not marker.exists()


async def test_an_unreachable_source_ends_the_stage_in_error(fake: FakeController, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/project.git"
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("true", source=WorkspaceSource(url, "e" * 40)))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert final.message.startswith(f"cannot fetch commit {'e' * 40} from {url}: ")


@pytest.mark.docker
async def test_a_checkout_is_readable_in_a_container(
    fake: FakeController, tmp_path: Path, upstream: Upstream, git_server: GitHttpServer, docker_image: str
) -> None:
    sha = upstream.commit("app.txt", "from git")
    executors = build_executors("docker", network="none")
    try:
        async with running_agent(fake, tmp_path / "state", executors=executors) as (_agent, _task):
            await serving(fake)
            source = WorkspaceSource(git_server.url("project.git"), sha)
            lease = fake.push_lease(
                spec(
                    "cat /workspace/app.txt; echo",
                    # Self-contained: the objects are in the workspace, not borrowed from the cache.
                    "test ! -e .git/objects/info/alternates && ls .git/objects/pack | grep -c '[.]pack$'",
                    image=docker_image,
                    source=source,
                )
            )
            await fake.wait_for(lambda: fake.final_update(lease), timeout=60)
    finally:
        await executors.close()
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, (final, fake.lines(lease))
    assert "from git" in fake.lines(lease)
    assert fake.lines(lease)[-1] == "1"


# --- artifacts ---------------------------------------------------------------------------------------


async def test_artifacts_are_uploaded_before_the_stage_reports_success(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec(
                "mkdir -p dist/sub && echo hi > dist/a.txt && head -c 600000 /dev/zero > dist/sub/big.bin",
                artifacts=("dist/*.txt", "dist/sub", "missing/*.log"),
            )
        )
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, final
    assert fake.uploaded[lease] == {"dist/a.txt": b"hi\n", "dist/sub/big.bin": bytes(600000)}
    lines = fake.lines(lease)
    assert "warning: artifact pattern 'missing/*.log' matched no files" in lines
    assert "uploaded artifact dist/a.txt (3 bytes)" in lines
    assert lines[-1] == "uploaded 2 artifact file(s), 600003 bytes"
    events = [(kind, value) for kind, lease_id, value in fake.timeline if lease_id == lease and kind != "ack"]
    finished = events.index(("update", StageStatus.SUCCEEDED))
    assert {("artifact", "dist/a.txt"), ("artifact", "dist/sub/big.bin")} <= set(events[:finished])


async def test_an_artifact_symlink_leaving_the_workspace_fails_the_stage(
    fake: FakeController, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(f"echo fine > ok.txt && ln -s {outside} leak.txt", artifacts=("*.txt",)))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert (
        final.message
        == "artifacts: artifact 'leak.txt' is a symlink pointing outside the workspace; refusing it"
    )
    assert lease not in fake.uploaded


async def test_artifacts_over_the_controller_limit_fail_the_stage_with_its_message(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.artifact_limit = 10
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("echo 0123456789 > big.txt", artifacts=("big.txt",)))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert final.message == "artifacts of stage 'x' exceed the limit of 10 bytes (BUILDIT_ARTIFACT_MAX_BYTES)"
    assert fake.lines(lease)[-1] == f"error: {final.message}"


async def test_needed_artifacts_are_in_the_workspace_before_the_commands_run(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.downloads["lease-test"] = [
        ("dist/a.txt", b"hello from build\n", "build"),
        ("dist/empty", b"", "build"),
        ("big.bin", bytes(range(256)) * 1000, "package"),
    ]
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec("cat dist/a.txt", "wc -c < big.bin", "test -f dist/empty", needs=("build", "package")),
            lease_id="lease-test",
        )
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, (final, fake.lines(lease))
    lines = fake.lines(lease)
    assert lines[0] == "restored 3 artifact file(s), 256017 bytes, from build, package"
    assert "hello from build" in lines and "256000" in lines
    assert fake.download_requests == ["lease-test"]


async def test_a_stage_without_needs_downloads_nothing(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("true"))
        await fake.wait_for(lambda: fake.final_update(lease))
    assert fake.download_requests == []


def _header(path: str, content: bytes, sha: str | None = None) -> pb.ArtifactChunk:
    import hashlib

    digest = sha if sha is not None else hashlib.sha256(content).hexdigest()
    return pb.ArtifactChunk(
        header=pb.ArtifactHeader(path=path, size=len(content), sha256=digest, stage="build")
    )


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [_header("../escape.txt", b"x"), pb.ArtifactChunk(data=b"x")],
            "artifact path '../escape.txt' contains '..'; artifacts must stay in the workspace",
        ),
        (
            [_header("/tmp/abs.txt", b"x"), pb.ArtifactChunk(data=b"x")],
            "artifact path '/tmp/abs.txt' is absolute; artifact paths are relative to the workspace",
        ),
        (
            [_header("a.txt", b"abc", sha="0" * 64), pb.ArtifactChunk(data=b"abc")],
            "artifact 'a.txt' arrived corrupted (sha256 mismatch)",
        ),
        (
            [_header("a.txt", b"abc"), pb.ArtifactChunk(data=b"ab")],
            "artifact 'a.txt' arrived with 2 of its 3 bytes",
        ),
        ([pb.ArtifactChunk(data=b"ab")], "the controller sent artifact data before any header"),
    ],
)
async def test_bad_downloads_fail_the_stage_and_write_nothing_outside(
    fake: FakeController, tmp_path: Path, messages: list[pb.ArtifactChunk], expected: str
) -> None:
    fake.raw_downloads["lease-bad"] = messages
    marker = tmp_path / "ran"
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(f"touch {marker}", needs=("build",)), lease_id="lease-bad")
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and (final.status, final.message) == (StageStatus.ERROR, expected)
    assert not marker.exists()
    assert not (tmp_path / "state" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


async def test_a_download_does_not_write_through_a_symlink_from_the_source(
    fake: FakeController, tmp_path: Path, upstream: Upstream, git_server: GitHttpServer
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (upstream.work / "dist").symlink_to(outside)  # a repository may hold any symlink
    (upstream.work / "notes.txt").symlink_to(outside / "notes.txt")
    sha = upstream.commit("app.txt", "v1")
    fake.downloads["lease-link"] = [("notes.txt", b"artifact\n", "build")]
    source = WorkspaceSource(git_server.url("project.git"), sha)
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("cat notes.txt", needs=("build",), source=source), lease_id="lease-link")
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
        fake.downloads["lease-link2"] = [("dist/a.txt", b"x", "build")]
        lease2 = fake.push_lease(spec("true", needs=("build",), source=source), lease_id="lease-link2")
        await fake.wait_for(lambda: fake.final_update(lease2), timeout=30)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, (final, fake.lines(lease))
    assert "artifact" in fake.lines(lease)  # the link was replaced by the file
    assert list(outside.iterdir()) == []
    final2 = fake.final_update(lease2)
    assert final2 is not None and (final2.status, final2.message) == (
        StageStatus.ERROR,
        "artifact 'dist/a.txt' would be restored outside the workspace",
    )


@pytest.mark.docker
async def test_a_stage_with_an_image_runs_in_docker(
    fake: FakeController, tmp_path: Path, docker_image: str
) -> None:
    executors = build_executors("docker", network="none")
    try:
        async with running_agent(fake, tmp_path, executors=executors) as (_agent, _task):
            await serving(fake)
            lease = fake.push_lease(spec("echo in $(pwd)", image=docker_image, timeout_s=60))
            await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    finally:
        await executors.close()
    assert list(fake.registrations[0].executors) == ["docker", "local"]
    assert fake.lines(lease) == ["$ echo in $(pwd)", "in /workspace"]


# --- logs across reconnects ------------------------------------------------------------------------


async def test_log_stream_closed_mid_stage_resends_unacked_chunks_exactly_once(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.close_log_stream_after = 2  # the 2nd chunk is stored but its ack is lost with the stream
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("for i in $(seq 1 40); do echo n$i; sleep 0.01; done"))
        await fake.wait_for(lambda: fake.final_update(lease))
    assert fake.log_streams_opened >= 2
    assert fake.lines(lease) == ["$ for i in $(seq 1 40); do echo n$i; sleep 0.01; done"] + [
        f"n{i}" for i in range(1, 41)
    ]
    assert_log_stream_clean(fake, lease)
    # The chunk whose ack was lost went out twice; the fake stored it once.
    seqs = [seq for lid, seq in fake.chunks_received if lid == lease]
    assert len(seqs) == len(set(seqs)) + 1


async def test_controller_restart_mid_stage_loses_nothing(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("for i in $(seq 1 60); do echo r$i; sleep 0.04; done"))
        await fake.wait_for(lambda: len(fake.lines(lease)) > 5)
        await fake.stop()
        await asyncio.sleep(0.3)  # the stage keeps running while the controller is away
        await fake.start()
        await serving(fake, 2)
        # The reopened lease stream tells the controller which lease is still running.
        assert fake.final_update(lease) is None
        assert list(fake.lease_requests[-1].running_lease_ids) == [lease]
        await fake.wait_for(lambda: fake.final_update(lease), timeout=15)
    assert fake.lines(lease)[1:] == [f"r{i}" for i in range(1, 61)]
    assert_log_stream_clean(fake, lease)
    assert fake.updates_for(lease)[-1] is StageStatus.SUCCEEDED


# --- lost leases ----------------------------------------------------------------------------------------


async def test_aborted_running_update_never_starts_the_stage(fake: FakeController, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    fake.abort_updates.add("lease-zombie")
    async with running_agent(fake, tmp_path) as (agent, _task):
        await serving(fake)
        fake.push_lease(spec(f"touch {marker}", "sleep 30"), lease_id="lease-zombie")
        await fake.wait_for(lambda: ("UpdateStage", "lease-zombie") in fake.aborted)
        await fake.wait_for(lambda: not agent.running_lease_ids, what="the lease to be dropped")
        await asyncio.sleep(0.3)
    assert not marker.exists()
    assert fake.aborted == [("UpdateStage", "lease-zombie")]  # refused once, never retried
    assert fake.updates == [] and fake.extends == [] and fake.chunks_received == []


async def test_a_refused_running_report_ends_the_stage_in_error_before_its_commands(
    fake: FakeController, tmp_path: Path
) -> None:
    # INVALID_ARGUMENT is not "lease gone": the lease is still ours, so the stage ends in ERROR.
    marker = tmp_path / "ran"
    fake.failures["UpdateStage"] = [grpc.StatusCode.INVALID_ARGUMENT]
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(f"touch {marker}"))
        await fake.wait_for(lambda: fake.final_update(lease), what="the final update")
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert "refused" in final.message and "INVALID_ARGUMENT" in final.message
    assert fake.lines(lease) == [f"error: {final.message}"]
    assert fake.updates_for(lease) == [StageStatus.ERROR]  # the refused RUNNING was not recorded
    assert not marker.exists()


TICKING = "while true; do echo tick; sleep 0.02; done"


@pytest.mark.parametrize("how", ["extend_aborted", "heartbeat", "log_ack", "cancel_lease_lost"])
async def test_a_lost_lease_kills_its_stage_and_reports_nothing(
    how: str, fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(TICKING))
        await fake.wait_for(lambda: "tick" in fake.lines(lease))
        lost_at = time.monotonic()
        if how == "extend_aborted":
            fake.abort_extends.add(lease)
        elif how == "heartbeat":
            fake.lost_in_heartbeat.add(lease)
        elif how == "log_ack":
            fake.lost_in_log_acks.add(lease)
        else:
            fake.push_cancel(lease, CancelReason.LEASE_LOST)
        await fake.wait_for(lambda: lease not in agent.running_lease_ids, timeout=5, what="the stage to stop")
        took = time.monotonic() - lost_at
        chunks = len(fake.chunks_received)
        await asyncio.sleep(0.3)
        assert len(fake.chunks_received) == chunks  # its buffered output was dropped, not sent
    assert took < 1.5
    assert fake.updates_for(lease) == [StageStatus.RUNNING]


async def test_aborted_final_update_is_not_retried(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("sleep 0.3", "echo hi"))
        await fake.wait_for(lambda: fake.updates_for(lease))
        fake.abort_updates.add(lease)
        await fake.wait_for(lambda: ("UpdateStage", lease) in fake.aborted)
        await fake.wait_for(lambda: not agent.running_lease_ids)
        await asyncio.sleep(0.3)
    assert fake.aborted == [("UpdateStage", lease)]
    assert fake.updates_for(lease) == [StageStatus.RUNNING]


# --- drain and processes ---------------------------------------------------------------------------


async def test_controller_drain_finishes_running_stage_then_returns_0(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (agent, task):
        await serving(fake)
        lease = fake.push_lease(spec("sleep 0.3", "echo finished"))
        await fake.wait_for(lambda: fake.updates_for(lease))
        fake.push_drain()
        assert await asyncio.wait_for(task, 10) == 0
        assert agent.draining
    assert fake.updates_for(lease) == [StageStatus.RUNNING, StageStatus.SUCCEEDED]
    assert fake.lines(lease)[-1] == "finished"
    assert fake.lease_streams_opened == 1


def agent_command(fake: FakeController, state_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "--controller",
        fake.address,
        "--state-dir",
        str(state_dir),
        "--executor",
        "local",
        "--name",
        "proc-agent",
        *extra,
    ]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )


async def test_process_sigterm_drains_running_stage_and_exits_0(fake: FakeController, tmp_path: Path) -> None:
    proc = await spawn(*agent_command(fake, tmp_path, "--registration-token", "enrol"))
    try:
        await serving(fake)
        lease = fake.push_lease(spec("sleep 0.6", "echo done"))
        await fake.wait_for(lambda: "$ sleep 0.6" in fake.lines(lease))
        proc.send_signal(signal.SIGTERM)
        await fake.wait_for(lambda: any(h.draining for h in fake.heartbeats), what="a draining heartbeat")
        await fake.wait_for(lambda: not fake.lease_stream_open, what="the lease stream to close")
        assert fake.final_update(lease) is None  # still running
        extra = fake.push_lease(spec("echo should-not-run"))
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert fake.updates_for(lease) == [StageStatus.RUNNING, StageStatus.SUCCEEDED]
    assert fake.lines(lease)[-1] == "done"
    assert fake.updates_for(extra) == []
    assert fake.lease_streams_opened == 1


async def test_process_second_signal_kills_running_stage(fake: FakeController, tmp_path: Path) -> None:
    proc = await spawn(*agent_command(fake, tmp_path, "--registration-token", "enrol"))
    try:
        await serving(fake)
        lease = fake.push_lease(spec("sleep 30"))
        await fake.wait_for(lambda: fake.lines(lease))
        proc.send_signal(signal.SIGINT)
        await fake.wait_for(lambda: not fake.lease_stream_open)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
        took = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert took < 3
    assert stderr.decode().strip().splitlines()[-1].startswith("buildit agent: stopped before")
    assert fake.updates_for(lease) == [StageStatus.RUNNING]


async def test_process_wrong_registration_token_exits_1_with_one_line(
    fake: FakeController, tmp_path: Path
) -> None:
    proc = await spawn(*agent_command(fake, tmp_path, "--registration-token", "wrong"))
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("buildit agent: registration refused by 127.0.0.1:")
    assert "invalid registration token" in last
    assert not (tmp_path / "agent.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--labels", "arch"], "must be KEY=VALUE"),
        (["--capacity", "zero"], "whole number"),
        (["--controller", "nohost"], "HOST:PORT"),
    ],
)
async def test_process_bad_input_exits_2(
    fake: FakeController, tmp_path: Path, flags: list[str], message: str
) -> None:
    proc = await spawn(*agent_command(fake, tmp_path), *flags)
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("buildit agent: error: ") and message in lines[0]


# An idle agent in a real process: registered, lease stream open, nothing running. On SIGUSR1 it
# prints the loaded top-level packages and its RSS, then the test drains it.
_IDLE_PROBE = """
import json, signal, sys
from agent.cli import main

def report(*_):
    rss = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    modules = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps({"modules": modules, "rss_kib": int(rss)}), flush=True)

signal.signal(signal.SIGUSR1, report)
sys.exit(main(sys.argv[1:]))
"""


async def test_idle_agent_process_loads_neither_litestar_nor_piccolo(
    fake: FakeController, tmp_path: Path
) -> None:
    args = agent_command(fake, tmp_path, "--registration-token", "enrol")[3:]
    proc = await spawn(sys.executable, "-c", _IDLE_PROBE, *args)
    try:
        await serving(fake)
        await fake.wait_for(lambda: fake.heartbeats, what="a heartbeat")
        proc.send_signal(signal.SIGUSR1)
        assert proc.stdout is not None
        report = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    modules = set(report["modules"])
    assert {"agent", "grpc"} <= modules
    assert not modules & {"litestar", "piccolo", "controller", "docker", "dulwich", "kdl", "rich"}
    print(f"idle agent RSS: {report['rss_kib'] / 1024:.1f} MiB")
