"""AgentService: registration, the lease stream, heartbeats, stage updates, logs and artifacts.

A thin translation layer between the wire and the scheduler; all scheduling decisions live in
`controller.scheduling`. Every message read or written goes through `agent.contract.convert`, the
codec the agent uses too, so both sides of the wire agree by construction. Refusals are raised as
`controller.errors` kinds and mapped to gRPC codes by `controller.rpc.errors.ErrorInterceptor`;
only codes the error tree has no kind for (UNIMPLEMENTED, DATA_LOSS) are chosen here. Artifacts are
fenced by the same rule as every other write (the stage must be leased to the calling agent under
that lease id, else LeaseLost, i.e. ABORTED), their content goes to the `ArtifactStore` and their
index rows to `controller.artifacts.services`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from uuid import UUID

import grpc
from grpc import aio

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.paths import artifact_path_problem
from agent.contract.types import (
    ArtifactAck,
    ArtifactHeader,
    CancelReason,
    ExtendLeaseResponse,
    HeartbeatResponse,
    LogAck,
    Ping,
    RegisterResponse,
    StageStatus,
)
from controller.agents.services import AgentRegistry
from controller.artifacts import services as artifacts
from controller.artifacts.store import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStore,
    ArtifactTooLarge,
)
from controller.errors import Invalid, LeaseLost, TooLarge
from controller.rpc.auth import current_agent
from controller.scheduling.model import StageState, now
from controller.scheduling.scheduler import Scheduler

log = logging.getLogger(__name__)

#: Default of BUILDIT_ARTIFACT_MAX_BYTES (controller.settings): 1 GiB of artifacts per stage.
DEFAULT_ARTIFACT_MAX_BYTES = 1024**3
_SHA256_HEX = frozenset("0123456789abcdef")

PING_INTERVAL_S = 15.0


class AgentServicer(pb_grpc.AgentServiceServicer):  # type: ignore[misc]
    """See the module docstring."""

    def __init__(
        self,
        scheduler: Scheduler,
        registry: AgentRegistry,
        artifact_store: ArtifactStore | None = None,
        artifact_max_bytes: int = DEFAULT_ARTIFACT_MAX_BYTES,
    ) -> None:
        """Without an `artifact_store`, the artifact calls answer UNIMPLEMENTED."""
        self.scheduler = scheduler
        self.registry = registry
        self.artifact_store = artifact_store
        self.artifact_max_bytes = artifact_max_bytes

    async def Register(
        self, request: pb.RegisterRequest, context: aio.ServicerContext
    ) -> pb.RegisterResponse:
        asked = convert.register_request_from_proto(request)
        agent_id, token = await self.registry.register(
            registration_token=asked.registration_token,
            name=asked.name,
            labels=dict(asked.labels),
            executors=list(asked.executors),
            capacity=asked.capacity,
            version=asked.version,
        )
        return convert.register_response_to_proto(
            RegisterResponse(
                agent_id=str(agent_id),
                agent_token=token,
                controller_version=self.registry.version,
                heartbeat_interval_ms=int(self.scheduler.heartbeat_interval_s * 1000),
            )
        )

    async def Lease(
        self, request: pb.LeaseRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.LeaseEvent]:
        agent_id = current_agent.get()
        asked = convert.lease_request_from_proto(request)
        stream = self.scheduler.open_stream(agent_id, list(asked.running_lease_ids), PING_INTERVAL_S)
        try:
            async for event in stream:
                yield convert.lease_event_to_proto(Ping(sent_at=now()) if event is None else event)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        beat = convert.heartbeat_request_from_proto(request)
        lost = await self.scheduler.heartbeat(
            current_agent.get(), list(beat.running_lease_ids), beat.free_slots, beat.draining
        )
        agent = self.scheduler.agent_by_id(current_agent.get())
        return convert.heartbeat_response_to_proto(
            HeartbeatResponse(
                lost_lease_ids=tuple(lost),
                draining=bool(agent and agent.draining),
                operator_drain=bool(agent and agent.operator_draining),
            )
        )

    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: aio.ServicerContext
    ) -> pb.ExtendLeaseResponse:
        stage = await self.scheduler.extend(current_agent.get(), request.lease_id)
        cancel = stage.cancel_deadline is not None
        return convert.extend_lease_response_to_proto(
            ExtendLeaseResponse(
                deadline=stage.lease_deadline,
                cancel_requested=cancel,
                cancel_reason=CancelReason.USER if cancel else None,
            )
        )

    async def UpdateStage(self, request: pb.StageUpdate, context: aio.ServicerContext) -> pb.StageUpdateAck:
        agent_id = current_agent.get()
        try:
            update = convert.stage_update_from_proto(request)
        except ValueError:
            raise Invalid("StageUpdate.status must be set") from None
        if update.status is StageStatus.RUNNING:
            stage = await self.scheduler.stage_started(agent_id, update.lease_id, update.started_at)
        elif update.status.finished:
            stage = await self.scheduler.stage_finished(
                agent_id,
                update.lease_id,
                update.status,
                update.exit_code,
                update.message,
                started_at=update.started_at,
                finished_at=update.finished_at,
            )
        else:
            raise Invalid(f"agents report running or a final status, not {update.status.value}")
        return convert.stage_update_ack_to_proto(stage.status)

    async def StreamLogs(
        self, request_iterator: AsyncIterator[pb.LogChunk], context: aio.ServicerContext
    ) -> AsyncIterator[pb.LogAck]:
        agent_id = current_agent.get()
        async for message in request_iterator:
            chunk = convert.log_chunk_from_proto(message)
            data = "".join(line.text + "\n" for line in chunk.lines).encode("utf-8", "replace")
            acked, lost = await self.scheduler.append_logs(agent_id, chunk.lease_id, chunk.seq, data)
            yield convert.log_ack_to_proto(LogAck(lease_id=chunk.lease_id, acked_seq=acked, lease_lost=lost))

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.ArtifactChunk], context: aio.ServicerContext
    ) -> pb.ArtifactAck:
        store = await self._store(context)
        agent_id = current_agent.get()
        parts = request_iterator.__aiter__()
        first = await anext(parts, None)
        header = convert.artifact_part_from_proto(first) if first is not None else None
        if not isinstance(header, ArtifactHeader):
            raise Invalid("UploadArtifact must start with an ArtifactHeader (lease_id, path, size, sha256)")
        stage = self._leased(agent_id, header.lease_id)
        problem = artifact_path_problem(header.path)
        if problem is not None:
            raise Invalid(f"stage '{stage.name}': {problem}")
        declared_sha = header.sha256.lower()
        if declared_sha and (len(declared_sha) != 64 or not set(declared_sha) <= _SHA256_HEX):
            raise Invalid(
                f"ArtifactHeader.sha256 of '{header.path}' must be 64 hex digits (or empty), "
                f"got {header.sha256[:80]!r}",
            )
        limit = self.artifact_max_bytes
        used = await artifacts.stage_bytes(stage.id, except_path=header.path)
        too_large = (
            f"artifacts of stage '{stage.name}' exceed the limit of {limit} bytes "
            "(BUILDIT_ARTIFACT_MAX_BYTES)"
        )
        if used + header.size > limit:
            await artifacts.forget_stage(stage.id)
            raise TooLarge(too_large)

        async def content() -> AsyncIterator[bytes]:
            async for message in parts:
                part = convert.artifact_part_from_proto(message)
                if not isinstance(part, bytes):
                    raise _BadStream(f"'{header.path}': a second header or an empty message after the first")
                yield part

        try:
            blob = await store.put(
                content(),
                limit=limit - used,
                expected_size=header.size,
                expected_sha256=declared_sha or None,
            )
        except ArtifactTooLarge:
            await artifacts.forget_stage(stage.id)
            raise TooLarge(too_large) from None
        except ArtifactCorrupt as exc:
            # The error tree has no kind for corrupt data: the one code chosen here.
            await context.abort(grpc.StatusCode.DATA_LOSS, f"artifact '{header.path}': {exc}")
            raise AssertionError("unreachable") from None
        except _BadStream as exc:
            raise Invalid(f"UploadArtifact: {exc}") from None
        # The lease may have been lost while the content streamed in: a zombie records nothing.
        stage = self._leased(agent_id, header.lease_id)
        await artifacts.record_artifact(
            org=self.registry.org,
            tenant=self.registry.tenant,
            run_id=stage.run_id,
            stage_run_id=stage.id,
            stage=stage.name,
            path=header.path,
            sha256=blob.sha256,
            size=blob.size,
        )
        return convert.artifact_ack_to_proto(
            ArtifactAck(sha256=blob.sha256, size=blob.size, deduplicated=blob.deduplicated)
        )

    async def DownloadArtifacts(
        self, request: pb.DownloadArtifactsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.ArtifactChunk]:
        store = await self._store(context)
        stage = self._leased(current_agent.get(), request.lease_id)
        rows = await artifacts.list_for_stages(stage.run_id, stage.needs)
        for row in rows:
            sha256 = str(row["sha256"])
            try:
                chunks = store.read(sha256)
                first = await anext(chunks, b"")
            except ArtifactMissing:
                log.error("artifact %s of stage %s: content %s missing", row["path"], row["stage"], sha256)
                await context.abort(
                    grpc.StatusCode.DATA_LOSS,
                    f"artifact '{row['path']}' of stage '{row['stage']}' is missing from the controller's "
                    "artifact store (its data dir lost the file)",
                )
                raise AssertionError("unreachable") from None
            header = ArtifactHeader(
                lease_id=request.lease_id,
                path=str(row["path"]),
                size=int(row["size"]),
                sha256=sha256,
                stage=str(row["stage"]),
            )
            yield convert.artifact_part_to_proto(header)
            if first:
                yield convert.artifact_part_to_proto(first)
            async for chunk in chunks:
                yield convert.artifact_part_to_proto(chunk)

    async def _store(self, context: aio.ServicerContext) -> ArtifactStore:
        if self.artifact_store is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this controller has no artifact store")
            raise AssertionError("unreachable")
        return self.artifact_store

    def _leased(self, agent_id: UUID, lease_id: str) -> StageState:
        """The stage held under `lease_id` by this agent; LeaseLost for anything else (the fencing rule)."""
        stage = self.scheduler.by_lease.get(lease_id)
        if stage is None or stage.agent_id != agent_id or stage.status.finished:
            raise LeaseLost(f"lease {lease_id} is not held by this agent any more")
        return stage


class _BadStream(Exception):
    """An UploadArtifact stream that does not follow header-then-data."""
