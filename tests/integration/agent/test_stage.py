"""agent.stage against the fake controller, with real processes: one stage attempt from lease to result."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from agent.contract import logmarks
from agent.contract.types import CancelReason, Resources, StageStatus, WorkspaceSource
from agent.executors.registry import build_executors
from agent.logs import MAX_CHUNK_LINES
from agent.settings import default_work_dir
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.git_server import GitHttpServer, Upstream
from tests.integration.agent.harness import assert_log_stream_clean, running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)


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
    # The log closes with BuildIt's line saying how the stage ended (see agent.contract.logmarks).
    assert fake.raw_lines(lease)[-1] == logmarks.line(
        logmarks.END, "succeeded", 0, 2, text="buildit: stage succeeded (2 commands)"
    )
    assert_log_stream_clean(fake, lease)
    assert sum(fake.stored_chunk_sizes[lease]) == len(expected) + 1
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
    assert not (default_work_dir(tmp_path) / "workspaces" / lease).exists()  # removed afterwards


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
    assert final.message == 'command 2 of 3 failed: "exit 3" exited with 3'
    assert fake.lines(lease) == ["$ echo before", "before", "$ exit 3"]
    # Command headers and the closing line are BuildIt's marked lines; the output is not.
    assert fake.raw_lines(lease) == [
        logmarks.line(logmarks.CMD, 1, 3, text="$ echo before"),
        "before",
        logmarks.line(logmarks.CMD, 2, 3, text="$ exit 3"),
        logmarks.line(logmarks.END, "failed", 2, 3, text=f"buildit: {final.message}"),
    ]


async def test_stage_runs_in_a_fresh_workspace_under_the_work_dir(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path / "state", work_dir=tmp_path / "work") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("pwd", "ls -A | wc -l", "mkdir -p sub && touch sub/x"))
        await fake.wait_for(lambda: fake.final_update(lease))
    assert fake.lines(lease)[1] == str((tmp_path / "work" / "workspaces" / lease).resolve())
    assert fake.lines(lease)[3].strip() == "0"
    assert not (tmp_path / "work" / "workspaces" / lease).exists()


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
        'timed out after 60s (in command 1 of 1: "sleep 30")',
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
    work = default_work_dir(tmp_path / "state")
    assert list((work / "workspaces").iterdir()) == []  # the workspace is removed
    assert len(list((work / "git-cache").iterdir())) == 1  # the cache stays
    [token] = fake.tokens
    for directory in ("git-cache", "git-home"):  # the token is never written down by git
        for file in (work / directory).rglob("*"):
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
                    # Borrowed from the cache, which the container sees read-only at the same path.
                    "ls $(cat .git/objects/info/alternates)/pack | grep -c '[.]pack$'",
                    "touch $(cat .git/objects/info/alternates)/x 2>/dev/null || echo read-only",
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
    assert fake.lines(lease)[-3:] == [
        "1",
        "$ touch $(cat .git/objects/info/alternates)/x 2>/dev/null || echo read-only",
        "read-only",
    ]


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


@pytest.mark.docker
async def test_resources_travel_with_the_lease_and_apply_where_the_executor_can(
    fake: FakeController, tmp_path: Path, docker_image: str
) -> None:
    executors = build_executors("docker", network="none", stage_defaults=Resources(memory_bytes=16 * 2**20))
    hog = 'x=$(head -c 64000000 /dev/zero | tr "\\0" a); echo survived'
    try:
        async with running_agent(fake, tmp_path, executors=executors) as (_agent, _task):
            await serving(fake)
            # The agent's default memory limit (16Mi) applies to a container stage that sets none.
            defaulted = fake.push_lease(spec(hog, image=docker_image, timeout_s=60, name="hog"))
            # Its own limit wins, and the local executor says it cannot apply one.
            own = fake.push_lease(
                spec("cat /sys/fs/cgroup/pids/pids.max", image=docker_image, resources=Resources(pids=77))
            )
            local = fake.push_lease(spec("echo ran", resources=Resources(cpu_millis=2000)))
            for lease in (defaulted, own, local):
                await fake.wait_for(lambda lease=lease: fake.final_update(lease), timeout=30)
    finally:
        await executors.close()
    hogged = fake.final_update(defaulted)
    assert hogged is not None and hogged.status == StageStatus.FAILED
    assert hogged.message.startswith("command 1 of 1 ran out of memory: ")
    assert hogged.message.endswith(" was killed (memory limit 16Mi)")
    assert fake.lines(own)[1:] == ["77"]
    assert fake.raw_lines(local)[0] == logmarks.line(
        logmarks.NOTE,
        text="warning: the local executor cannot apply this stage's resources (cpu=2): it runs without "
        "these limits",
    )
    assert fake.lines(local)[1:] == ["$ echo ran", "ran"]


# --- the stage's writes --------------------------------------------------------------------------


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
