"""AgentService: registration, the lease stream, heartbeats, stage updates and logs.

A thin translation layer between proto messages and the scheduler; all decisions live in
`controller.scheduling`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from grpc import aio

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.types import StageStatus
from controller.agents.services import AgentRegistry, RegistrationError
from controller.rpc.auth import current_agent
from controller.scheduling.scheduler import CancelOrder, LeaseOffer, Scheduler, SchedulingError, now

PING_INTERVAL_S = 15.0
_CANCEL_REASONS = {
    "user": pb.CANCEL_REASON_USER,
    "timeout": pb.CANCEL_REASON_TIMEOUT,
    "lease_lost": pb.CANCEL_REASON_LEASE_LOST,
}


async def _fail(context: aio.ServicerContext, exc: SchedulingError) -> None:
    code = {
        "not_found": grpc.StatusCode.NOT_FOUND,
        "invalid": grpc.StatusCode.INVALID_ARGUMENT,
        "conflict": grpc.StatusCode.ALREADY_EXISTS,
        "lease_lost": grpc.StatusCode.ABORTED,
        "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    }.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
    await context.abort(code, exc.message)


class AgentServicer(pb_grpc.AgentServiceServicer):  # type: ignore[misc]
    """See the module docstring."""

    def __init__(self, scheduler: Scheduler, registry: AgentRegistry) -> None:
        self.scheduler = scheduler
        self.registry = registry

    async def Register(
        self, request: pb.RegisterRequest, context: aio.ServicerContext
    ) -> pb.RegisterResponse:
        try:
            agent_id, token = await self.registry.register(
                registration_token=request.registration_token,
                name=request.name,
                labels=dict(request.labels),
                executors=list(request.executors),
                capacity=request.capacity,
                version=request.version,
            )
        except RegistrationError as exc:
            await context.abort(exc.status, exc.message)
            raise
        return pb.RegisterResponse(
            agent_id=str(agent_id),
            agent_token=token,
            controller_version=self.registry.version,
            heartbeat_interval_ms=int(self.scheduler.heartbeat_interval_s * 1000),
        )

    async def Lease(
        self, request: pb.LeaseRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.LeaseEvent]:
        agent_id = current_agent.get()
        stream = self.scheduler.open_stream(agent_id, list(request.running_lease_ids), PING_INTERVAL_S)
        try:
            async for event in stream:
                if event is None:
                    yield pb.LeaseEvent(ping=pb.Ping(sent_at=convert.timestamp_to_proto(now())))
                else:
                    yield _event_to_proto(event)
        except SchedulingError as exc:
            await _fail(context, exc)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        try:
            lost = await self.scheduler.heartbeat(
                current_agent.get(), list(request.running_lease_ids), request.free_slots, request.draining
            )
        except SchedulingError as exc:
            await _fail(context, exc)
            raise
        agent = self.scheduler.agent_by_id(current_agent.get())
        return pb.HeartbeatResponse(lost_lease_ids=lost, draining=bool(agent and agent.draining))

    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: aio.ServicerContext
    ) -> pb.ExtendLeaseResponse:
        try:
            stage = await self.scheduler.extend(current_agent.get(), request.lease_id)
        except SchedulingError as exc:
            await _fail(context, exc)
            raise
        return pb.ExtendLeaseResponse(
            deadline=convert.timestamp_to_proto(stage.lease_deadline),
            cancel_requested=stage.cancel_deadline is not None,
            cancel_reason=pb.CANCEL_REASON_USER
            if stage.cancel_deadline is not None
            else pb.CANCEL_REASON_UNSPECIFIED,
        )

    async def UpdateStage(self, request: pb.StageUpdate, context: aio.ServicerContext) -> pb.StageUpdateAck:
        agent_id = current_agent.get()
        try:
            status = convert.status_from_proto(request.status)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "StageUpdate.status must be set")
            raise
        try:
            if status is StageStatus.RUNNING:
                stage = await self.scheduler.stage_started(
                    agent_id,
                    request.lease_id,
                    convert.timestamp_from_proto(request.started_at)
                    if request.HasField("started_at")
                    else None,
                )
            elif status.finished:
                exit_code = request.exit_code if request.HasField("exit_code") else None
                stage = await self.scheduler.stage_finished(
                    agent_id,
                    request.lease_id,
                    status,
                    exit_code,
                    request.message,
                    convert.timestamp_from_proto(request.started_at)
                    if request.HasField("started_at")
                    else None,
                )
            else:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"agents report running or a final status, not {status.value}",
                )
                raise AssertionError("unreachable")
        except SchedulingError as exc:
            await _fail(context, exc)
            raise
        return pb.StageUpdateAck(status=convert.status_to_proto(stage.status))

    async def StreamLogs(
        self, request_iterator: AsyncIterator[pb.LogChunk], context: aio.ServicerContext
    ) -> AsyncIterator[pb.LogAck]:
        agent_id = current_agent.get()
        async for chunk in request_iterator:
            data = "".join(line.text + "\n" for line in chunk.lines).encode("utf-8", "replace")
            acked, lost = await self.scheduler.append_logs(agent_id, chunk.lease_id, chunk.seq, data)
            yield pb.LogAck(lease_id=chunk.lease_id, acked_seq=acked, lease_lost=lost)

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.ArtifactChunk], context: aio.ServicerContext
    ) -> pb.ArtifactAck:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "artifact upload arrives with Git-native workspaces (not in this version)",
        )
        raise AssertionError("unreachable")


def _event_to_proto(event: LeaseOffer | CancelOrder) -> pb.LeaseEvent:
    if isinstance(event, LeaseOffer):
        return pb.LeaseEvent(
            lease=pb.StageLease(
                lease_id=event.lease_id,
                run_id=str(event.run_id),
                stage_run_id=str(event.stage_id),
                attempt=event.attempt,
                deadline=convert.timestamp_to_proto(event.deadline),
                spec=convert.spec_to_proto(event.spec),
            )
        )
    return pb.LeaseEvent(
        cancel=pb.CancelStage(
            lease_id=event.lease_id,
            reason=_CANCEL_REASONS.get(event.reason, pb.CANCEL_REASON_UNSPECIFIED),
            message=event.message,
        )
    )
