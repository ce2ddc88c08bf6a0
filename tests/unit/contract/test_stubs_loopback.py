"""The generated stubs work end to end over a real gRPC connection on the loopback interface.

Small in-test servicers stand in for the controller; the point is the contract itself: every RPC
shape (unary, server stream, bidirectional stream, client stream) is wired correctly, the auth
metadata convention reaches the server, and converted StageSpecs arrive intact.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.types import ExecutionResult, StageSpec, StageStatus, WorkspaceSource

ROOT = Path(__file__).resolve().parents[3]
GEN_SCRIPT = ROOT / "scripts" / "gen-proto.sh"
GEN_DIR = ROOT / "agent" / "contract" / "_gen"

TOKEN = "agent-token-123"
DEADLINE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SPEC = StageSpec(
    name="build",
    index=1,
    commands=("make dist",),
    image="python:3.12",
    env={"GIT_SHA": "abc"},
    secrets={"TOKEN": "s3cr3t"},
    needs=("test",),
    artifacts=("dist/*",),
    timeout_s=120.0,
    retries=1,
    labels={"arch": "amd64"},
    workdir="app",
    source=WorkspaceSource("file:///srv/app.git", "0" * 40, "refs/heads/main"),
)


def _bearer(context: grpc.aio.ServicerContext) -> str:
    return str(dict(context.invocation_metadata() or ()).get("authorization", ""))


class FakeAgentService(pb_grpc.AgentServiceServicer):
    """Enough of a controller to exercise every AgentService call shape."""

    def __init__(self) -> None:
        self.updates: list[pb.StageUpdate] = []
        self.stored_seq: dict[str, int] = {}

    async def _require_token(self, context: grpc.aio.ServicerContext) -> None:
        if _bearer(context) != f"Bearer {TOKEN}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong agent token")

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterResponse:
        if request.registration_token != "enrol":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad registration token")
        return pb.RegisterResponse(
            agent_id=f"agent-{request.name}",
            agent_token=TOKEN,
            controller_version=request.version,
            heartbeat_interval_ms=5000,
        )

    async def Lease(
        self, request: pb.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LeaseEvent]:
        await self._require_token(context)
        yield pb.LeaseEvent(ping=pb.Ping(sent_at=convert.timestamp_to_proto(DEADLINE)))
        lease = pb.StageLease(
            lease_id="lease-1",
            run_id="run-1",
            stage_run_id="stage-1",
            attempt=1,
            deadline=convert.timestamp_to_proto(DEADLINE),
            spec=convert.spec_to_proto(SPEC),
        )
        yield pb.LeaseEvent(lease=lease)
        yield pb.LeaseEvent(
            cancel=pb.CancelStage(lease_id="lease-1", reason=pb.CANCEL_REASON_USER, message="by alice")
        )
        yield pb.LeaseEvent(drain=pb.Drain(reason="maintenance"))

    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendLeaseResponse:
        await self._require_token(context)
        if request.lease_id != "lease-1":
            await context.abort(grpc.StatusCode.ABORTED, f"lease {request.lease_id} is no longer current")
        return pb.ExtendLeaseResponse(
            deadline=convert.timestamp_to_proto(DEADLINE + timedelta(seconds=30)),
            cancel_requested=True,
            cancel_reason=pb.CANCEL_REASON_TIMEOUT,
        )

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        await self._require_token(context)
        lost = [lease for lease in request.running_lease_ids if lease != "lease-1"]
        return pb.HeartbeatResponse(lost_lease_ids=lost, draining=request.free_slots == 0)

    async def UpdateStage(
        self, request: pb.StageUpdate, context: grpc.aio.ServicerContext
    ) -> pb.StageUpdateAck:
        await self._require_token(context)
        self.updates.append(request)
        return pb.StageUpdateAck(status=request.status)

    async def StreamLogs(
        self, request_iterator: AsyncIterator[pb.LogChunk], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LogAck]:
        await self._require_token(context)
        async for chunk in request_iterator:
            if chunk.lease_id != "lease-1":
                yield pb.LogAck(lease_id=chunk.lease_id, lease_lost=True)
                continue
            stored = self.stored_seq.get(chunk.lease_id, 0)
            if chunk.seq == stored + 1:  # in order: store; duplicates and gaps are only acked
                stored = self.stored_seq[chunk.lease_id] = chunk.seq
            yield pb.LogAck(lease_id=chunk.lease_id, acked_seq=stored)

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.ArtifactChunk], context: grpc.aio.ServicerContext
    ) -> pb.ArtifactAck:
        await self._require_token(context)
        header: pb.ArtifactHeader | None = None
        digest = hashlib.sha256()
        size = 0
        async for part in request_iterator:
            if part.WhichOneof("part") == "header":
                header = part.header
            else:
                digest.update(part.data)
                size += len(part.data)
        if header is None or digest.hexdigest() != header.sha256 or size != header.size:
            await context.abort(grpc.StatusCode.DATA_LOSS, "artifact content does not match its header")
        return pb.ArtifactAck(sha256=digest.hexdigest(), size=size)


class FakeBuildItService(pb_grpc.BuildItServiceServicer):
    """Echo-style BuildItService for the integration-facing call shapes."""

    def _run(self, run_id: str, status: pb.StageStatus = pb.STAGE_STATUS_RUNNING) -> pb.Run:
        stage = pb.Stage(
            id="stage-1",
            name="build",
            status=pb.STAGE_STATUS_RUNNING,
            attempt=1,
            max_attempts=2,
            agent_name="agent-x",
            exit_code=0,
            started_at=convert.timestamp_to_proto(DEADLINE),
        )
        return pb.Run(id=run_id, repository="app", number=7, status=status, stages=[stage])

    async def TriggerRun(
        self, request: pb.TriggerRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.TriggerRunResponse:
        return pb.TriggerRunResponse(
            run=pb.Run(
                id="run-1",
                repository=request.repository,
                ref=request.ref,
                status=pb.STAGE_STATUS_QUEUED,
                trigger=pb.RUN_TRIGGER_API,
            )
        )

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.GetRunResponse:
        if request.run_id != "run-1":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id}")
        return pb.GetRunResponse(run=self._run(request.run_id))

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        start = int(request.page_token or 0)
        ids = [f"run-{i}" for i in range(5)][start : start + request.page_size]
        following = start + request.page_size
        return pb.ListRunsResponse(
            runs=[pb.Run(id=i) for i in ids], next_page_token=str(following) if following < 5 else ""
        )

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        yield pb.RunEvent(snapshot=self._run(request.run_id))
        yield pb.RunEvent(stage_updated=pb.Stage(id="stage-1", status=pb.STAGE_STATUS_SUCCEEDED))
        yield pb.RunEvent(run_updated=pb.Run(id=request.run_id, status=pb.STAGE_STATUS_SUCCEEDED))

    async def StreamLogs(
        self, request: pb.StreamLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamLogsResponse]:
        lines = [f"{request.stage} line {i}" for i in range(3)]
        for offset, text in enumerate(lines[request.offset :], start=request.offset):
            yield pb.StreamLogsResponse(lines=[pb.LogLine(text=text)], next_offset=offset + 1)
        if request.follow:
            yield pb.StreamLogsResponse(lines=[pb.LogLine(text="followed")], next_offset=4)

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelRunResponse:
        return pb.CancelRunResponse(run=pb.Run(id=request.run_id, status=pb.STAGE_STATUS_CANCELLED))

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        agent = pb.Agent(
            id="agent-1",
            name="builder-1",
            status=pb.AGENT_STATUS_DRAINING,
            labels={"arch": "arm64"},
            executors=["docker", "local"],
            capacity=4,
            running=2,
            last_seen=convert.timestamp_to_proto(DEADLINE),
            version="0.1.0",
        )
        return pb.ListAgentsResponse(agents=[agent])

    async def ValidatePipeline(
        self, request: pb.ValidatePipelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.ValidatePipelineResponse:
        diagnostic = pb.Diagnostic(
            file=request.filename,
            line=2,
            col=14,
            severity=pb.SEVERITY_ERROR,
            message=f"echo: {request.source}",
            hint='end the node with ";"',
        )
        return pb.ValidatePipelineResponse(valid=False, diagnostics=[diagnostic])


@pytest.fixture
async def servicers() -> AsyncIterator[tuple[FakeAgentService, str]]:
    agent_service = FakeAgentService()
    server = grpc.aio.server()
    pb_grpc.add_AgentServiceServicer_to_server(agent_service, server)
    pb_grpc.add_BuildItServiceServicer_to_server(FakeBuildItService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    await server.start()
    try:
        yield agent_service, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
async def channel(servicers: tuple[FakeAgentService, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(servicers[1]) as chan:
        yield chan


AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def test_register_returns_a_token(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentServiceStub(channel)
    response = await stub.Register(
        pb.RegisterRequest(
            registration_token="enrol",
            name="host-1",
            labels={"arch": "amd64"},
            executors=["docker"],
            capacity=2,
            version="0.1.0",
        )
    )
    assert response.agent_id == "agent-host-1"
    assert response.agent_token == TOKEN
    assert response.controller_version == "0.1.0"
    assert response.heartbeat_interval_ms == 5000

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Register(pb.RegisterRequest(registration_token="wrong"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_lease_stream_carries_the_spec_intact(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentServiceStub(channel)
    events = [
        event
        async for event in stub.Lease(
            pb.LeaseRequest(agent_id="agent-host-1", free_slots=2, running_lease_ids=[]), metadata=AUTH
        )
    ]
    assert [event.WhichOneof("event") for event in events] == ["ping", "lease", "cancel", "drain"]
    lease = events[1].lease
    assert (lease.lease_id, lease.run_id, lease.stage_run_id, lease.attempt) == (
        "lease-1",
        "run-1",
        "stage-1",
        1,
    )
    assert convert.timestamp_from_proto(lease.deadline) == DEADLINE
    assert convert.spec_from_proto(lease.spec) == SPEC
    assert events[2].cancel.reason == pb.CANCEL_REASON_USER
    assert events[2].cancel.message == "by alice"
    assert events[3].drain.reason == "maintenance"


async def test_calls_without_the_agent_token_are_refused(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ExtendLease(pb.ExtendLeaseRequest(lease_id="lease-1"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.Lease(pb.LeaseRequest(agent_id="a"), metadata=(("authorization", "Bearer no"),)):
            pass
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_extend_heartbeat_and_fencing(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentServiceStub(channel)
    extended = await stub.ExtendLease(pb.ExtendLeaseRequest(lease_id="lease-1"), metadata=AUTH)
    assert convert.timestamp_from_proto(extended.deadline) == DEADLINE + timedelta(seconds=30)
    assert extended.cancel_requested
    assert extended.cancel_reason == pb.CANCEL_REASON_TIMEOUT

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ExtendLease(pb.ExtendLeaseRequest(lease_id="stale"), metadata=AUTH)
    assert info.value.code() is grpc.StatusCode.ABORTED

    beat = await stub.Heartbeat(
        pb.HeartbeatRequest(agent_id="a", running_lease_ids=["lease-1", "zombie"], free_slots=0),
        metadata=AUTH,
    )
    assert list(beat.lost_lease_ids) == ["zombie"]
    assert beat.draining


async def test_update_stage_carries_the_result(
    channel: grpc.aio.Channel, servicers: tuple[FakeAgentService, str]
) -> None:
    stub = pb_grpc.AgentServiceStub(channel)
    started = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    update = convert.result_to_update(
        "lease-1",
        ExecutionResult(StageStatus.FAILED, exit_code=3, message="boom"),
        started_at=started,
        finished_at=started + timedelta(seconds=1),
    )
    ack = await stub.UpdateStage(update, metadata=AUTH)
    assert convert.status_from_proto(ack.status) is StageStatus.FAILED
    received = servicers[0].updates[-1]
    assert convert.result_from_update(received) == ExecutionResult(StageStatus.FAILED, 3, "boom")
    assert convert.timestamp_from_proto(received.started_at) == started


async def test_log_stream_acks_each_chunk_and_ignores_duplicates(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentServiceStub(channel)

    def chunk(seq: int, lease_id: str = "lease-1") -> pb.LogChunk:
        line = pb.LogLine(text=f"line {seq}")
        return pb.LogChunk(lease_id=lease_id, seq=seq, lines=[line])

    # 1, 2, 3 in order; 2 again (a resend after reconnect); 5 (a gap); 4; a zombie lease.
    sent = [chunk(1), chunk(2), chunk(3), chunk(2), chunk(5), chunk(4), chunk(1, "old-lease")]

    async def requests() -> AsyncIterator[pb.LogChunk]:
        for item in sent:
            yield item

    acks = [ack async for ack in stub.StreamLogs(requests(), metadata=AUTH)]
    assert [(ack.lease_id, ack.acked_seq, ack.lease_lost) for ack in acks] == [
        ("lease-1", 1, False),
        ("lease-1", 2, False),
        ("lease-1", 3, False),
        ("lease-1", 3, False),
        ("lease-1", 3, False),
        ("lease-1", 4, False),
        ("old-lease", 0, True),
    ]


async def test_artifact_upload_is_content_addressed(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentServiceStub(channel)
    content = b"x" * 3000 + b"end"
    digest = hashlib.sha256(content).hexdigest()

    def parts() -> Iterator[pb.ArtifactChunk]:
        header = pb.ArtifactHeader(lease_id="lease-1", path="dist/a.whl", size=len(content), sha256=digest)
        yield pb.ArtifactChunk(header=header)
        for start in range(0, len(content), 1024):
            yield pb.ArtifactChunk(data=content[start : start + 1024])

    ack = await stub.UploadArtifact(parts(), metadata=AUTH)
    assert (ack.sha256, ack.size) == (digest, len(content))


async def test_buildit_service_round_trips(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.BuildItServiceStub(channel)

    triggered = await stub.TriggerRun(pb.TriggerRunRequest(repository="app", ref="main", env={"A": "1"}))
    assert (triggered.run.repository, triggered.run.ref) == ("app", "main")
    assert triggered.run.trigger == pb.RUN_TRIGGER_API

    run = (await stub.GetRun(pb.GetRunRequest(run_id="run-1"))).run
    assert (run.number, run.stages[0].agent_name, run.stages[0].max_attempts) == (7, "agent-x", 2)
    assert run.stages[0].HasField("exit_code") and run.stages[0].exit_code == 0
    assert not run.stages[0].HasField("image")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetRun(pb.GetRunRequest(run_id="nope"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND

    ids: list[str] = []
    token = ""
    while True:
        page = await stub.ListRuns(pb.ListRunsRequest(page_size=2, page_token=token))
        ids += [r.id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert ids == [f"run-{i}" for i in range(5)]

    events = [e async for e in stub.WatchRun(pb.WatchRunRequest(run_id="run-1"))]
    assert [e.WhichOneof("event") for e in events] == ["snapshot", "stage_updated", "run_updated"]
    assert events[0].snapshot.stages[0].id == "stage-1"
    assert events[2].run_updated.status == pb.STAGE_STATUS_SUCCEEDED

    logs = [r async for r in stub.StreamLogs(pb.StreamLogsRequest(run_id="run-1", stage="build", offset=1))]
    assert [(r.lines[0].text, r.next_offset) for r in logs] == [("build line 1", 2), ("build line 2", 3)]
    followed = [r async for r in stub.StreamLogs(pb.StreamLogsRequest(stage="b", offset=3, follow=True))]
    assert [r.lines[0].text for r in followed] == ["followed"]

    cancelled = await stub.CancelRun(pb.CancelRunRequest(run_id="run-1", reason="not needed"))
    assert convert.status_from_proto(cancelled.run.status) is StageStatus.CANCELLED

    agents = (await stub.ListAgents(pb.ListAgentsRequest())).agents
    assert len(agents) == 1
    agent = agents[0]
    assert (agent.name, agent.status, agent.capacity, agent.running) == (
        "builder-1",
        pb.AGENT_STATUS_DRAINING,
        4,
        2,
    )
    assert dict(agent.labels) == {"arch": "arm64"}
    assert list(agent.executors) == ["docker", "local"]
    assert convert.timestamp_from_proto(agent.last_seen) == DEADLINE

    source = 'stage "a" { run "x" }'
    validated = await stub.ValidatePipeline(
        pb.ValidatePipelineRequest(source=source, filename=".buildit.kdl")
    )
    assert not validated.valid
    (diagnostic,) = validated.diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.col) == (".buildit.kdl", 2, 14)
    assert diagnostic.severity == pb.SEVERITY_ERROR
    assert diagnostic.message == f"echo: {source}"
    assert diagnostic.hint == 'end the node with ";"'


# --- the proto-check script -----------------------------------------------------------------------------


def _check(against: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(GEN_SCRIPT), sys.executable, str(scratch), "--check", str(against)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_proto_check_passes_on_the_committed_code(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()  # like the Makefile's mktemp -d
    result = _check(GEN_DIR, scratch)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert not scratch.exists()  # an empty scratch directory is cleaned up


def test_proto_check_fails_when_generated_code_is_stale(tmp_path: Path) -> None:
    stale = tmp_path / "_gen"
    shutil.copytree(GEN_DIR, stale, ignore=shutil.ignore_patterns("__pycache__"))
    with (stale / "buildit_pb2.pyi").open("a") as handle:
        handle.write("# edited by hand\n")
    result = _check(stale, tmp_path / "scratch")
    assert result.returncode == 1
    assert f"{stale} is stale: run make proto" in result.stderr
    assert "edited by hand" in result.stderr  # the diff shows what differs


def test_proto_check_fails_when_a_generated_file_is_missing(tmp_path: Path) -> None:
    stale = tmp_path / "_gen"
    shutil.copytree(GEN_DIR, stale, ignore=shutil.ignore_patterns("__pycache__"))
    (stale / "buildit_pb2_grpc.py").unlink()
    result = _check(stale, tmp_path / "scratch")
    assert result.returncode == 1
    assert "is stale: run make proto" in result.stderr


def test_generation_is_deterministic(tmp_path: Path) -> None:
    for name in ("one", "two"):
        subprocess.run(
            ["bash", str(GEN_SCRIPT), sys.executable, name],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=tmp_path,  # relative paths and the caller's directory must not matter
        )
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == ["__init__.py", "buildit_pb2.py", "buildit_pb2.pyi", "buildit_pb2_grpc.py"]
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    grpc_code = (tmp_path / "one" / "buildit_pb2_grpc.py").read_text()
    assert "from . import buildit_pb2 as buildit__pb2" in grpc_code
