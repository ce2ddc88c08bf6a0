"""A protocol-level test double of the controller's AgentService, for the agent tests.

It serves the real generated AgentService over real gRPC on 127.0.0.1 and follows the wire contract of
buildit.proto where the agent can observe it (bearer-token auth, the Lease stream closing the previous
one, log dedup by seq with acks carrying the highest stored seq, ABORTED for leases it no longer
honours), but it has no database, scheduler or planner: tests push leases and cancels by hand, and
knobs simulate trouble (acks dropped or delayed, log streams closed mid-stage, leases aborted or lost,
tokens forgotten, a restart, any status code queued for a method). Everything the agent sends is
recorded, in order, in `timeline`.
Artifacts: uploads are checked (header first, size, sha256) and kept in `uploaded`; DownloadArtifacts
serves what a test put in `downloads` for a lease (or raw messages from `raw_downloads`).

The real controller is being built alongside; end-to-end tests of the agent against it (separate
processes, real database) come with the controller.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from agent.contract import convert, logmarks
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.types import CancelReason, StageSpec, StageStatus


@dataclass
class Update:
    """One UpdateStage the fake accepted."""

    lease_id: str
    status: StageStatus
    exit_code: int | None
    message: str
    has_started_at: bool
    has_finished_at: bool


@dataclass(eq=False)
class FakeController(pb_grpc.AgentServiceServicer):
    """AgentService with recording and knobs; `await start()`, then point an agent at `address`."""

    registration_token: str = "enrol"
    heartbeat_interval_ms: int = 200
    version: str = "0.1.0"
    #: Agent versions Register accepts (None: any).
    accepted_versions: set[str] | None = None

    # --- knobs
    #: Leases the fake no longer honours: UpdateStage/ExtendLease fail ABORTED, chunks get lease_lost.
    abort_leases: set[str] = field(default_factory=set)
    #: Finer knobs: only UpdateStage aborts / only ExtendLease aborts / only log acks say lease_lost.
    abort_updates: set[str] = field(default_factory=set)
    abort_extends: set[str] = field(default_factory=set)
    lost_in_log_acks: set[str] = field(default_factory=set)
    #: Leases reported in HeartbeatResponse.lost_lease_ids.
    lost_in_heartbeat: set[str] = field(default_factory=set)
    #: Leases whose ExtendLease answers cancel_requested (with this reason).
    cancel_on_extend: dict[str, CancelReason] = field(default_factory=dict)
    #: When set: after this many chunks on a log stream, store the last one WITHOUT acking it and end
    #: the stream (the ack is "lost"); the knob then resets so the reconnect works.
    close_log_stream_after: int | None = None
    #: Seconds to wait before each ack.
    ack_delay_s: float = 0.0
    #: Tell draining agents to drain (HeartbeatResponse.draining).
    drain_in_heartbeat: bool = False
    #: Artifacts of a lease above this many bytes in total are refused with RESOURCE_EXHAUSTED.
    artifact_limit: int | None = None
    #: lease_id -> [(path, content, producing stage)] served by DownloadArtifacts.
    downloads: dict[str, list[tuple[str, bytes, str]]] = field(default_factory=dict)
    #: lease_id -> raw ArtifactChunk messages served by DownloadArtifacts (wins over `downloads`).
    raw_downloads: dict[str, list[pb.ArtifactChunk]] = field(default_factory=dict)
    #: Method name ("Register", "Lease", "Heartbeat", "UpdateStage", ...) -> status codes its next calls
    #: fail with, one per call, in order (after authentication; each is used once).
    failures: dict[str, list[grpc.StatusCode]] = field(default_factory=dict)

    # --- records
    registrations: list[pb.RegisterRequest] = field(default_factory=list)
    lease_requests: list[pb.LeaseRequest] = field(default_factory=list)
    lease_metadata: list[str] = field(default_factory=list)
    heartbeats: list[pb.HeartbeatRequest] = field(default_factory=list)
    extends: list[str] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    #: (method, lease_id) of every call refused with ABORTED.
    aborted: list[tuple[str, str]] = field(default_factory=list)
    chunks_received: list[tuple[str, int]] = field(default_factory=list)
    stored_lines: dict[str, list[str]] = field(default_factory=dict)
    stored_seq: dict[str, int] = field(default_factory=dict)
    stored_chunk_sizes: dict[str, list[int]] = field(default_factory=dict)
    log_streams_opened: int = 0
    lease_streams_opened: int = 0
    lease_stream_open: bool = False
    #: ("ack", lease_id, seq) / ("update", lease_id, status) / ("chunk", lease_id, seq), in order.
    timeline: list[tuple[str, str, Any]] = field(default_factory=list)
    #: agent token -> agent id
    tokens: dict[str, str] = field(default_factory=dict)
    #: lease_id -> {path: content} of the artifacts accepted.
    uploaded: dict[str, dict[str, bytes]] = field(default_factory=dict)
    #: Leases DownloadArtifacts was called for, in order.
    download_requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: Any = None
        self.port = 0
        self._queue: asyncio.Queue[pb.LeaseEvent | None] | None = None
        self._pending: list[pb.LeaseEvent] = []
        self._ids = itertools.count(1)

    # --- lifecycle

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Serve on 127.0.0.1 (a free port the first time, the same port after a `stop`)."""
        server = grpc.aio.server()
        pb_grpc.add_AgentServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server
        return self.address

    async def stop(self) -> None:
        """Stop serving at once (open streams break, as when a controller dies)."""
        if self._queue is not None:
            self._queue.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    # --- test controls

    def push_lease(self, spec: StageSpec, lease_id: str | None = None, attempt: int = 1) -> str:
        """Lease `spec` to the agent (on the open Lease stream, or the next one)."""
        lease_id = lease_id or f"lease-{next(self._ids)}"
        lease = pb.StageLease(
            lease_id=lease_id,
            run_id="run-1",
            stage_run_id=f"stage-{lease_id}",
            attempt=attempt,
            spec=convert.spec_to_proto(spec),
        )
        self._push(pb.LeaseEvent(lease=lease))
        return lease_id

    def push_cancel(self, lease_id: str, reason: CancelReason = CancelReason.USER, message: str = "") -> None:
        """Tell the agent to stop a stage."""
        self._push(
            pb.LeaseEvent(
                cancel=pb.CancelStage(
                    lease_id=lease_id, reason=convert.cancel_reason_to_proto(reason), message=message
                )
            )
        )

    def push_drain(self, reason: str = "operator") -> None:
        """Ask the agent to take no new leases."""
        self._push(pb.LeaseEvent(drain=pb.Drain(reason=reason)))

    def forget_tokens(self) -> None:
        """As if the controller's database was reset: every agent token becomes unknown."""
        self.tokens.clear()

    def _push(self, event: pb.LeaseEvent) -> None:
        if self._queue is not None:
            self._queue.put_nowait(event)
        else:
            self._pending.append(event)

    # --- queries

    def updates_for(self, lease_id: str) -> list[StageStatus]:
        return [u.status for u in self.updates if u.lease_id == lease_id]

    def final_update(self, lease_id: str) -> Update | None:
        finals = [u for u in self.updates if u.lease_id == lease_id and u.status.finished]
        return finals[-1] if finals else None

    def lines(self, lease_id: str) -> list[str]:
        """The stored log as a terminal shows it (BuildIt's markers removed), without its closing line.

        Most tests are about what the commands printed; `raw_lines` has the log as stored.
        """
        return [
            logmarks.plain(line)
            for line in self.stored_lines.get(lease_id, [])
            if (mark := logmarks.parse(line)) is None or mark.kind != logmarks.END
        ]

    def raw_lines(self, lease_id: str) -> list[str]:
        """The stored log's lines as they are, BuildIt's markers and closing line included."""
        return self.stored_lines.get(lease_id, [])

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
        """Poll `predicate` until it is truthy; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
            await asyncio.sleep(0.01)

    # --- AgentService

    async def _inject(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Fail this call with the next code queued in `failures` for `method`, if any."""
        codes = self.failures.get(method)
        if codes:
            code = codes.pop(0)
            await context.abort(code, f"{method} refused by the test ({code.name})")

    async def _agent(self, context: grpc.aio.ServicerContext) -> str:
        bearer = str(dict(context.invocation_metadata() or ()).get("authorization", ""))
        token = bearer.removeprefix("Bearer ")
        agent_id = self.tokens.get(token)
        if not bearer.startswith("Bearer ") or agent_id is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown agent token")
        assert agent_id is not None
        return agent_id

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterResponse:
        self.registrations.append(request)
        await self._inject("Register", context)
        if request.registration_token != self.registration_token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid registration token")
        if self.accepted_versions is not None and request.version not in self.accepted_versions:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"agent version {request.version} is not compatible with controller version {self.version}",
            )
        agent_id = f"agent-{len(self.registrations)}"
        token = secrets.token_hex(16)
        self.tokens[token] = agent_id
        return pb.RegisterResponse(
            agent_id=agent_id,
            agent_token=token,
            controller_version=self.version,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )

    async def Lease(
        self, request: pb.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LeaseEvent]:
        await self._agent(context)
        await self._inject("Lease", context)
        self.lease_requests.append(request)
        self.lease_metadata.append(str(dict(context.invocation_metadata() or ()).get("authorization", "")))
        if self._queue is not None:  # a new stream closes the agent's previous one
            self._queue.put_nowait(None)
        queue: asyncio.Queue[pb.LeaseEvent | None] = asyncio.Queue()
        for event in self._pending:
            queue.put_nowait(event)
        self._pending.clear()
        self._queue = queue
        self.lease_streams_opened += 1
        self.lease_stream_open = True
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            if self._queue is queue:
                self._queue = None
                self.lease_stream_open = False
                # Events nobody received stay pending for the next stream.
                while not queue.empty():
                    left = queue.get_nowait()
                    if left is not None:
                        self._pending.append(left)

    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendLeaseResponse:
        await self._agent(context)
        await self._inject("ExtendLease", context)
        self.extends.append(request.lease_id)
        if request.lease_id in self.abort_leases | self.abort_extends:
            self.aborted.append(("ExtendLease", request.lease_id))
            await context.abort(grpc.StatusCode.ABORTED, "lease is no longer current")
        reason = self.cancel_on_extend.get(request.lease_id)
        if reason is not None:
            return pb.ExtendLeaseResponse(
                cancel_requested=True, cancel_reason=convert.cancel_reason_to_proto(reason)
            )
        return pb.ExtendLeaseResponse()

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        await self._agent(context)
        await self._inject("Heartbeat", context)
        self.heartbeats.append(request)
        lost = [lease for lease in request.running_lease_ids if lease in self.lost_in_heartbeat]
        return pb.HeartbeatResponse(lost_lease_ids=lost, draining=self.drain_in_heartbeat)

    async def UpdateStage(
        self, request: pb.StageUpdate, context: grpc.aio.ServicerContext
    ) -> pb.StageUpdateAck:
        await self._agent(context)
        await self._inject("UpdateStage", context)
        if request.lease_id in self.abort_leases | self.abort_updates:
            self.aborted.append(("UpdateStage", request.lease_id))
            await context.abort(grpc.StatusCode.ABORTED, "lease is no longer current")
        status = convert.status_from_proto(request.status)
        self.updates.append(
            Update(
                request.lease_id,
                status,
                request.exit_code if request.HasField("exit_code") else None,
                request.message,
                request.HasField("started_at"),
                request.HasField("finished_at"),
            )
        )
        self.timeline.append(("update", request.lease_id, status))
        return pb.StageUpdateAck(status=request.status)

    async def StreamLogs(
        self, request_iterator: AsyncIterator[pb.LogChunk], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LogAck]:
        await self._agent(context)
        self.log_streams_opened += 1
        received = 0
        async for chunk in request_iterator:
            received += 1
            lease_id = chunk.lease_id
            self.chunks_received.append((lease_id, chunk.seq))
            self.timeline.append(("chunk", lease_id, chunk.seq))
            stored = self.stored_seq.get(lease_id, 0)
            if lease_id in self.abort_leases | self.lost_in_log_acks:
                yield pb.LogAck(lease_id=lease_id, acked_seq=stored, lease_lost=True)
                continue
            if chunk.seq == stored + 1:
                # A LogLine may pack several lines, joined by "\n" (agent.logs).
                lines = [text for line in chunk.lines for text in line.text.split("\n")]
                self.stored_lines.setdefault(lease_id, []).extend(lines)
                self.stored_chunk_sizes.setdefault(lease_id, []).append(len(lines))
                self.stored_seq[lease_id] = stored = chunk.seq
            if self.close_log_stream_after is not None and received >= self.close_log_stream_after:
                self.close_log_stream_after = None
                return  # the ack for this chunk is "lost"
            if self.ack_delay_s:
                await asyncio.sleep(self.ack_delay_s)
            self.timeline.append(("ack", lease_id, stored))
            yield pb.LogAck(lease_id=lease_id, acked_seq=stored)

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.ArtifactChunk], context: grpc.aio.ServicerContext
    ) -> pb.ArtifactAck:
        await self._agent(context)
        header: pb.ArtifactHeader | None = None
        data = bytearray()
        async for message in request_iterator:
            if message.WhichOneof("part") == "header":
                if header is not None:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a second header")
                header = message.header
            elif header is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "data before the header")
            else:
                data += message.data
        if header is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no header")
        assert header is not None
        lease_id = header.lease_id
        if lease_id in self.abort_leases:
            self.aborted.append(("UploadArtifact", lease_id))
            await context.abort(grpc.StatusCode.ABORTED, "lease is no longer current")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != header.size or digest != header.sha256:
            await context.abort(grpc.StatusCode.DATA_LOSS, f"{header.path}: size or sha256 mismatch")
        stored = self.uploaded.setdefault(lease_id, {})
        if self.artifact_limit is not None:
            total = sum(len(v) for p, v in stored.items() if p != header.path) + len(data)
            if total > self.artifact_limit:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"artifacts of stage 'x' exceed the limit of {self.artifact_limit} bytes "
                    "(BUILDIT_ARTIFACT_MAX_BYTES)",
                )
        stored[header.path] = bytes(data)
        self.timeline.append(("artifact", lease_id, header.path))
        return pb.ArtifactAck(sha256=digest, size=len(data))

    async def DownloadArtifacts(
        self, request: pb.DownloadArtifactsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ArtifactChunk]:
        await self._agent(context)
        self.download_requests.append(request.lease_id)
        if request.lease_id in self.abort_leases:
            self.aborted.append(("DownloadArtifacts", request.lease_id))
            await context.abort(grpc.StatusCode.ABORTED, "lease is no longer current")
        raw = self.raw_downloads.get(request.lease_id)
        if raw is not None:
            for message in raw:
                yield message
            return
        for path, content, stage in self.downloads.get(request.lease_id, []):
            yield pb.ArtifactChunk(
                header=pb.ArtifactHeader(
                    lease_id=request.lease_id,
                    path=path,
                    size=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    stage=stage,
                )
            )
            for start in range(0, len(content), 100_000):
                yield pb.ArtifactChunk(data=content[start : start + 100_000])
