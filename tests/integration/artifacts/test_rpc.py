"""UploadArtifact / DownloadArtifacts of a real in-process controller, called over real gRPC on 127.0.0.1.

The agent never sends a bad upload, so the controller's own checks (fencing, paths, sizes, digests,
the limit) are driven here with the agent's client, one message at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from agent.client import ControllerClient, LeaseStream, RpcFailure
from agent.contract.types import (
    ArtifactHeader,
    ArtifactPart,
    LeaseRequest,
    RegisterRequest,
    StageLease,
    StageStatus,
    StageUpdate,
)
from controller.artifacts.services import list_for_run
from controller.pipelines.services import create_pipeline
from controller.server import Running, start
from controller.settings import ControllerSettings

pytestmark = pytest.mark.timeout(60)

PIPELINE = """
pipeline "rpc"
stage "build" { run "true"; artifacts "*"; }
stage "test" needs="build" { run "true"; }
"""
LIMIT = 1000


@pytest.fixture
async def controller(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    settings = ControllerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        http_port=0,
        grpc_port=0,
        registration_token="enrol",
        artifact_max_bytes=LIMIT,
    )
    running = await start(settings)
    try:
        yield running
    finally:
        await running.stop()


async def agent(running: Running, name: str) -> tuple[ControllerClient, str]:
    client = ControllerClient(f"127.0.0.1:{running.grpc_port}")
    response = await client.register(RegisterRequest("enrol", name, {}, ("local",), 1, "0.1.0"))
    client.token = response.agent_token
    return client, response.agent_id


async def next_lease(stream: LeaseStream) -> StageLease:
    async for event in stream.events():
        if isinstance(event, StageLease):
            return event
    raise AssertionError("the lease stream ended")


async def parts(*items: ArtifactPart) -> AsyncIterator[ArtifactPart]:
    for item in items:
        yield item


def upload(
    lease_id: str, path: str, content: bytes, *, size: int | None = None, sha: str | None = None
) -> Iterable[ArtifactPart]:
    digest = hashlib.sha256(content).hexdigest() if sha is None else sha
    header = ArtifactHeader(lease_id, path, len(content) if size is None else size, digest)
    return [header, *([content] if content else [])]


async def refused(client: ControllerClient, items: Iterable[ArtifactPart]) -> RpcFailure:
    with pytest.raises(RpcFailure) as failed:
        await client.upload_artifact(parts(*items), timeout=10)
    return failed.value


@contextlib.asynccontextmanager
async def leased_build(running: Running) -> AsyncIterator[tuple[ControllerClient, LeaseStream, StageLease]]:
    """An agent holding the lease of a fresh run's "build" stage (reported running)."""
    client, agent_id = await agent(running, "builder")
    stream = client.open_lease_stream(LeaseRequest(agent_id, 1))
    deps = running.deps
    pipeline = await create_pipeline(deps.org, deps.tenant, PIPELINE, None)
    await deps.scheduler.trigger(pipeline["id"])
    lease = await next_lease(stream)
    assert lease.spec.name == "build"
    await client.update_stage(StageUpdate(lease.lease_id, StageStatus.RUNNING))
    try:
        yield client, stream, lease
    finally:
        stream.cancel()
        await client.close()
        # Let the controller finish closing the stream before the test stops it: stopping a
        # PostgreSQL-backed controller in the middle of that cleanup can leave a pooled connection
        # held, and its stop() then waits forever (seen with the lease stream, not with artifacts).
        conn = deps.scheduler.agents[uuid.UUID(agent_id)]
        for _ in range(100):
            if conn.events is None:
                break
            await asyncio.sleep(0.05)


def stored_files(running: Running) -> list[Path]:
    store = running.deps.artifacts
    assert store is not None
    return [p for p in store.root.rglob("*") if p.is_file()]


async def test_an_upload_is_stored_and_restored_into_the_stage_that_needs_it(controller: Running) -> None:
    async with leased_build(controller) as (client, stream, lease):
        ack = await client.upload_artifact(parts(*upload(lease.lease_id, "dist/a.txt", b"hello")), timeout=10)
        assert (ack.sha256, ack.size, ack.deduplicated) == (hashlib.sha256(b"hello").hexdigest(), 5, False)
        again = await client.upload_artifact(parts(*upload(lease.lease_id, "copy.txt", b"hello")), timeout=10)
        assert again.deduplicated
        big = bytes(range(256)) * 3  # 768 bytes, over three chunks
        await client.upload_artifact(
            parts(
                ArtifactHeader(lease.lease_id, "big.bin", len(big), hashlib.sha256(big).hexdigest()),
                big[:300],
                big[300:600],
                big[600:],
            ),
            timeout=10,
        )
        await client.update_stage(StageUpdate(lease.lease_id, StageStatus.SUCCEEDED, exit_code=0))
        following = await next_lease(stream)
        assert following.spec.name == "test"
        received = [part async for part in client.download_artifacts(following.lease_id)]
    headers = [p for p in received if isinstance(p, ArtifactHeader)]
    assert [(h.path, h.size, h.stage, h.lease_id) for h in headers] == [
        ("big.bin", 768, "build", following.lease_id),
        ("copy.txt", 5, "build", following.lease_id),
        ("dist/a.txt", 5, "build", following.lease_id),
    ]
    assert b"".join(p for p in received if isinstance(p, bytes)) == big + b"hello" + b"hello"
    assert len(stored_files(controller)) == 2  # "hello" once, big.bin once


async def test_a_path_uploaded_twice_keeps_the_last_content(controller: Running) -> None:
    async with leased_build(controller) as (client, stream, lease):
        await client.upload_artifact(parts(*upload(lease.lease_id, "a.txt", b"first")), timeout=10)
        await client.upload_artifact(parts(*upload(lease.lease_id, "a.txt", b"second")), timeout=10)
        # 995 more bytes fit: the replaced content no longer counts against the limit.
        await client.upload_artifact(parts(*upload(lease.lease_id, "b.bin", bytes(994))), timeout=10)
        await client.update_stage(StageUpdate(lease.lease_id, StageStatus.SUCCEEDED, exit_code=0))
        following = await next_lease(stream)
        received = [part async for part in client.download_artifacts(following.lease_id)]
    assert [p.path for p in received if isinstance(p, ArtifactHeader)] == ["a.txt", "b.bin"]
    assert received[1] == b"second"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "artifact path '../x' contains '..'; artifacts must stay in the workspace"),
        (
            "/etc/passwd",
            "artifact path '/etc/passwd' is absolute; artifact paths are relative to the workspace",
        ),
        ("a//b", "artifact path 'a//b' is not normalised (empty or '.' parts); send e.g. 'dist/app.whl'"),
        ("./a", "artifact path './a' is not normalised (empty or '.' parts); send e.g. 'dist/app.whl'"),
        ("", "artifact path is empty"),
    ],
)
async def test_unsafe_paths_are_invalid_arguments(controller: Running, path: str, message: str) -> None:
    async with leased_build(controller) as (client, _stream, lease):
        failure = await refused(client, upload(lease.lease_id, path, b"x"))
    assert (failure.code, failure.details) == ("INVALID_ARGUMENT", f"stage 'build': {message}")
    assert stored_files(controller) == []


async def test_malformed_streams_are_refused(controller: Running) -> None:
    async with leased_build(controller) as (client, _stream, lease):
        failure = await refused(client, [b"data first"])
        assert failure.code == "INVALID_ARGUMENT" and "must start with an ArtifactHeader" in failure.details
        failure = await refused(
            client, [*upload(lease.lease_id, "a", b"x"), ArtifactHeader(lease.lease_id, "b", 0)]
        )
        assert failure.code == "INVALID_ARGUMENT" and "a second header" in failure.details
        failure = await refused(client, upload(lease.lease_id, "a", b"x", sha="xyz"))
        assert failure.code == "INVALID_ARGUMENT" and "must be 64 hex digits" in failure.details


async def test_content_that_does_not_match_its_header_is_data_loss(controller: Running) -> None:
    async with leased_build(controller) as (client, _stream, lease):
        failure = await refused(client, upload(lease.lease_id, "a.txt", b"abc", size=4))
        assert (failure.code, failure.details) == (
            "DATA_LOSS",
            "artifact 'a.txt': 3 bytes arrived, 4 were announced",
        )
        failure = await refused(client, upload(lease.lease_id, "a.txt", b"abc", sha="0" * 64))
        assert failure.code == "DATA_LOSS" and f"{'0' * 64} was announced" in failure.details
    assert stored_files(controller) == []


async def test_the_stage_limit_refuses_and_drops_the_stage_artifacts(controller: Running) -> None:
    message = f"artifacts of stage 'build' exceed the limit of {LIMIT} bytes (BUILDIT_ARTIFACT_MAX_BYTES)"
    async with leased_build(controller) as (client, _stream, lease):
        await client.upload_artifact(parts(*upload(lease.lease_id, "a.bin", bytes(600))), timeout=10)
        failure = await refused(client, upload(lease.lease_id, "b.bin", bytes(500)))
        assert (failure.code, failure.details) == ("RESOURCE_EXHAUSTED", message)
        # A header that understates the size is caught while the content streams in.
        failure = await refused(client, upload(lease.lease_id, "c.bin", bytes(1200), size=10))
        assert (failure.code, failure.details) == ("RESOURCE_EXHAUSTED", message)
        assert await list_for_run(controller.deps.tenant, lease_run(lease)) == []


def lease_run(lease: StageLease) -> uuid.UUID:
    return uuid.UUID(lease.run_id)


async def test_leases_not_held_by_the_caller_are_aborted(controller: Running) -> None:
    async with leased_build(controller) as (client, _stream, lease):
        failure = await refused(client, upload("no-such-lease", "a.txt", b"x"))
        assert failure.code == "ABORTED"
        other, _ = await agent(controller, "intruder")
        try:
            failure = await refused(other, upload(lease.lease_id, "a.txt", b"x"))
            assert failure.code == "ABORTED"
            with pytest.raises(RpcFailure) as download:
                [part async for part in other.download_artifacts(lease.lease_id)]
            assert download.value.code == "ABORTED"
        finally:
            await other.close()
        # Once the stage finished, its lease is history: a late (zombie) upload changes nothing.
        await client.update_stage(StageUpdate(lease.lease_id, StageStatus.SUCCEEDED, exit_code=0))
        failure = await refused(client, upload(lease.lease_id, "late.txt", b"x"))
        assert failure.code == "ABORTED"
    assert stored_files(controller) == []
