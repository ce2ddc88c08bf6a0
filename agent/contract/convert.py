"""Mapping between the plain dataclasses in `types.py` and the generated `buildit.proto` messages.

Why this module exists: the rest of BuildIt (planner, scheduler, executors, agent runner) works with
the dataclasses only, so the wire format can evolve without touching them. Besides the generated
code in `_gen/` and the controller's `rpc/` package, this is the only module that handles proto
types. Every conversion is total and loss-free for the values the dataclasses allow, so
`spec_from_proto(spec_to_proto(s)) == s` (timeouts are carried with nanosecond precision).

Why one module past 500 lines: it is the whole codec, one pair of functions per message, shared by
both sides of the wire; keeping every pair together is what keeps them symmetric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from agent.contract._gen import buildit_pb2 as pb
from agent.contract.types import (
    ArtifactAck,
    ArtifactHeader,
    ArtifactPart,
    CancelReason,
    CancelStage,
    Drain,
    ExecutionResult,
    ExtendLeaseResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseEvent,
    LeaseRequest,
    LogAck,
    LogChunk,
    LogLine,
    Ping,
    RegisterRequest,
    RegisterResponse,
    Resources,
    StageLease,
    StageSpec,
    StageStatus,
    StageUpdate,
    WorkspaceSource,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DOWNLOAD_ARTIFACTS",
    "EXTEND_LEASE",
    "HEARTBEAT",
    "LEASE",
    "REGISTER",
    "STREAM_LOGS",
    "UPDATE_STAGE",
    "UPLOAD_ARTIFACT",
    "Method",
    "artifact_ack_from_proto",
    "artifact_ack_to_proto",
    "artifact_part_from_proto",
    "artifact_part_to_proto",
    "cancel_reason_from_proto",
    "cancel_reason_to_proto",
    "duration_from_seconds",
    "extend_lease_response_from_proto",
    "extend_lease_response_to_proto",
    "heartbeat_request_from_proto",
    "heartbeat_request_to_proto",
    "heartbeat_response_from_proto",
    "heartbeat_response_to_proto",
    "lease_event_from_proto",
    "lease_event_to_proto",
    "lease_request_from_proto",
    "lease_request_to_proto",
    "log_ack_from_proto",
    "log_ack_to_proto",
    "log_chunk_from_proto",
    "log_chunk_to_proto",
    "log_line_from_proto",
    "log_line_to_proto",
    "register_request_from_proto",
    "register_request_to_proto",
    "register_response_from_proto",
    "register_response_to_proto",
    "result_from_update",
    "result_to_update",
    "seconds_from_duration",
    "source_from_proto",
    "source_to_proto",
    "spec_from_proto",
    "spec_to_proto",
    "stage_update_from_proto",
    "stage_update_to_proto",
    "status_from_proto",
    "status_to_proto",
    "timestamp_from_proto",
    "timestamp_to_proto",
]

#: The timeout a stage gets when the wire message leaves `StageSpec.timeout` unset. Taken from the
#: dataclass so the two can never disagree.
DEFAULT_TIMEOUT_S: float = StageSpec(name="", index=0, commands=()).timeout_s

_NANOS_PER_SECOND = 1_000_000_000

# Spelled out (rather than derived from names) so a type checker sees every value. The check below
# makes a status added to one side but not the other fail at import time, instead of silently
# travelling as STAGE_STATUS_UNSPECIFIED.
_STATUS_TO_PROTO: dict[StageStatus, pb.StageStatus] = {
    StageStatus.PENDING: pb.STAGE_STATUS_PENDING,
    StageStatus.QUEUED: pb.STAGE_STATUS_QUEUED,
    StageStatus.RUNNING: pb.STAGE_STATUS_RUNNING,
    StageStatus.SUCCEEDED: pb.STAGE_STATUS_SUCCEEDED,
    StageStatus.FAILED: pb.STAGE_STATUS_FAILED,
    StageStatus.CANCELLED: pb.STAGE_STATUS_CANCELLED,
    StageStatus.SKIPPED: pb.STAGE_STATUS_SKIPPED,
    StageStatus.TIMED_OUT: pb.STAGE_STATUS_TIMED_OUT,
    StageStatus.ERROR: pb.STAGE_STATUS_ERROR,
}
_STATUS_FROM_PROTO: dict[int, StageStatus] = {value: status for status, value in _STATUS_TO_PROTO.items()}


def _check_status_tables() -> None:
    """Fail loudly when buildit.proto and types.py disagree about the set of stage statuses."""
    expected = {f"STAGE_STATUS_{status.name}" for status in StageStatus}
    mapped = {pb.StageStatus.Name(value) for value in _STATUS_FROM_PROTO}
    on_wire = set(pb.StageStatus.keys()) - {"STAGE_STATUS_UNSPECIFIED"}
    if set(_STATUS_TO_PROTO) != set(StageStatus) or not expected == mapped == on_wire:
        raise ImportError("buildit.proto StageStatus and agent.contract.types.StageStatus differ")


_check_status_tables()


# --- statuses -----------------------------------------------------------------------------------------


def status_to_proto(status: StageStatus) -> pb.StageStatus:
    """The `buildit.v1.StageStatus` enum value (an int on the wire) for a Python status."""
    return _STATUS_TO_PROTO[status]


def status_from_proto(value: int) -> StageStatus:
    """The Python status for a wire enum value.

    Raises ValueError for STAGE_STATUS_UNSPECIFIED (a sender forgot to set the field) and for values
    this build does not know (a newer peer): guessing a status would corrupt the run's state, so the
    caller must reject the message instead.
    """
    try:
        return _STATUS_FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"stage status {value!r} is unspecified or unknown") from None


# --- times ---------------------------------------------------------------------------------------------


def duration_from_seconds(seconds: float) -> Duration:
    """A Duration for a float number of seconds, rounded to the nanosecond.

    Going through integer nanoseconds (rather than splitting seconds and fraction by hand) keeps the
    round trip exact for every float with at most nine decimals, e.g. 1.1 stays 1.1.
    """
    duration = Duration()
    duration.FromNanoseconds(round(seconds * _NANOS_PER_SECOND))
    return duration


def seconds_from_duration(duration: Duration) -> float:
    """Float seconds for a Duration (the inverse of `duration_from_seconds`)."""
    return duration.ToNanoseconds() / _NANOS_PER_SECOND


def timestamp_to_proto(moment: datetime | None) -> Timestamp | None:
    """A Timestamp for an aware datetime; None stays None (an unset field means "not yet").

    Naive datetimes are rejected: the wire carries UTC instants, and guessing the local zone of a
    naive value would shift times silently between machines.
    """
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone; use an aware datetime")
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def timestamp_from_proto(stamp: Timestamp | None) -> datetime | None:
    """An aware UTC datetime for a Timestamp; None or an all-zero (unset) Timestamp gives None."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)


# --- stage specs ---------------------------------------------------------------------------------------


def source_to_proto(source: WorkspaceSource) -> pb.WorkspaceSource:
    """The wire form of a workspace source."""
    return pb.WorkspaceSource(repo_url=source.repo_url, commit_sha=source.commit_sha, ref=source.ref)


def source_from_proto(message: pb.WorkspaceSource) -> WorkspaceSource:
    """The dataclass form of a workspace source."""
    return WorkspaceSource(repo_url=message.repo_url, commit_sha=message.commit_sha, ref=message.ref)


def spec_to_proto(spec: StageSpec) -> pb.StageSpec:
    """The wire form of a compiled stage, sent to an agent inside a StageLease.

    `image=None` (a local stage) leaves the optional `image` field absent, which is distinct from an
    empty string; `source=None` leaves `source` unset. The timeout is always set explicitly, so a
    zero timeout survives the trip instead of turning into the default.
    """
    message = pb.StageSpec(
        name=spec.name,
        index=spec.index,
        commands=list(spec.commands),
        env=dict(spec.env),
        secrets=dict(spec.secrets),
        needs=list(spec.needs),
        artifacts=list(spec.artifacts),
        timeout=duration_from_seconds(spec.timeout_s),
        retries=spec.retries,
        labels=dict(spec.labels),
        workdir=spec.workdir,
        resources=pb.Resources(
            cpu_millis=spec.resources.cpu_millis,
            memory_bytes=spec.resources.memory_bytes,
            pids=spec.resources.pids,
        ),
    )
    if spec.image is not None:
        message.image = spec.image
    if spec.source is not None:
        message.source.CopyFrom(source_to_proto(spec.source))
    return message


def spec_from_proto(message: pb.StageSpec) -> StageSpec:
    """The dataclass form of a wire stage spec, as an executor consumes it.

    Absent optional fields map back to the dataclass defaults: no `image` -> None (local executor),
    no `source` -> None, no `timeout` -> DEFAULT_TIMEOUT_S.
    """
    return StageSpec(
        name=message.name,
        index=message.index,
        commands=tuple(message.commands),
        image=message.image if message.HasField("image") else None,
        env=dict(message.env),
        secrets=dict(message.secrets),
        needs=tuple(message.needs),
        artifacts=tuple(message.artifacts),
        timeout_s=seconds_from_duration(message.timeout)
        if message.HasField("timeout")
        else DEFAULT_TIMEOUT_S,
        retries=message.retries,
        labels=dict(message.labels),
        workdir=message.workdir,
        source=source_from_proto(message.source) if message.HasField("source") else None,
        resources=Resources(
            max(message.resources.cpu_millis, 0),
            max(message.resources.memory_bytes, 0),
            max(message.resources.pids, 0),
        ),
    )


# --- results -------------------------------------------------------------------------------------------


def result_to_update(
    lease_id: str,
    result: ExecutionResult,
    *,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> pb.StageUpdate:
    """The StageUpdate an agent sends when an executor reports how a stage ended.

    The lease id is required because every write is fenced by it: the controller rejects updates
    from an agent whose lease was re-leased to someone else.
    """
    update = pb.StageUpdate(
        lease_id=lease_id,
        status=status_to_proto(result.status),
        message=result.message,
    )
    if result.exit_code is not None:
        update.exit_code = result.exit_code
    started = timestamp_to_proto(started_at)
    if started is not None:
        update.started_at.CopyFrom(started)
    finished = timestamp_to_proto(finished_at)
    if finished is not None:
        update.finished_at.CopyFrom(finished)
    return update


def result_from_update(update: pb.StageUpdate) -> ExecutionResult:
    """The ExecutionResult carried by a StageUpdate, as the controller records it.

    Raises ValueError when the status is unspecified or unknown (see `status_from_proto`).
    """
    return ExecutionResult(
        status=status_from_proto(update.status),
        exit_code=update.exit_code if update.HasField("exit_code") else None,
        message=update.message,
    )


# --- AgentService messages -----------------------------------------------------------------------------
#
# The agent runtime never touches proto types: it calls the controller through grpc multi-callables
# whose serializers are the `Method` codecs below, so requests go in and responses come out as the
# dataclasses of types.py.

_CANCEL_REASON_TO_PROTO: dict[CancelReason, pb.CancelReason] = {
    CancelReason.USER: pb.CANCEL_REASON_USER,
    CancelReason.TIMEOUT: pb.CANCEL_REASON_TIMEOUT,
    CancelReason.LEASE_LOST: pb.CANCEL_REASON_LEASE_LOST,
}
_CANCEL_REASON_FROM_PROTO: dict[int, CancelReason] = {
    value: reason for reason, value in _CANCEL_REASON_TO_PROTO.items()
}


def cancel_reason_to_proto(reason: CancelReason) -> pb.CancelReason:
    """The wire enum value of a cancel reason."""
    return _CANCEL_REASON_TO_PROTO[reason]


def cancel_reason_from_proto(value: int) -> CancelReason:
    """The cancel reason of a wire value.

    An unspecified or unknown reason reads as USER: the stage must stop either way, and reporting it
    CANCELLED (never retried) is what a plain "stop this" asks for.
    """
    return _CANCEL_REASON_FROM_PROTO.get(value, CancelReason.USER)


def _set_time(field: Timestamp, moment: datetime | None) -> None:
    stamp = timestamp_to_proto(moment)
    if stamp is not None:
        field.CopyFrom(stamp)


def log_line_to_proto(line: LogLine) -> pb.LogLine:
    """The wire form of stage output."""
    return pb.LogLine(text=line.text)


def log_line_from_proto(message: pb.LogLine) -> LogLine:
    """The dataclass form of stage output."""
    return LogLine(text=message.text)


def log_chunk_to_proto(chunk: LogChunk) -> pb.LogChunk:
    """The wire form of a log chunk."""
    return pb.LogChunk(
        lease_id=chunk.lease_id, seq=chunk.seq, lines=[log_line_to_proto(line) for line in chunk.lines]
    )


def log_chunk_from_proto(message: pb.LogChunk) -> LogChunk:
    """The dataclass form of a log chunk."""
    return LogChunk(
        lease_id=message.lease_id,
        seq=message.seq,
        lines=tuple(log_line_from_proto(line) for line in message.lines),
    )


def log_ack_to_proto(ack: LogAck) -> pb.LogAck:
    """The wire form of a log acknowledgement."""
    return pb.LogAck(lease_id=ack.lease_id, acked_seq=ack.acked_seq, lease_lost=ack.lease_lost)


def log_ack_from_proto(message: pb.LogAck) -> LogAck:
    """The dataclass form of a log acknowledgement."""
    return LogAck(lease_id=message.lease_id, acked_seq=message.acked_seq, lease_lost=message.lease_lost)


def register_request_to_proto(request: RegisterRequest) -> pb.RegisterRequest:
    """The wire form of a registration."""
    return pb.RegisterRequest(
        registration_token=request.registration_token,
        name=request.name,
        labels=dict(request.labels),
        executors=list(request.executors),
        capacity=request.capacity,
        version=request.version,
    )


def register_request_from_proto(message: pb.RegisterRequest) -> RegisterRequest:
    """The dataclass form of a registration."""
    return RegisterRequest(
        registration_token=message.registration_token,
        name=message.name,
        labels=dict(message.labels),
        executors=tuple(message.executors),
        capacity=message.capacity,
        version=message.version,
    )


def register_response_to_proto(response: RegisterResponse) -> pb.RegisterResponse:
    """The wire form of a registration's answer."""
    return pb.RegisterResponse(
        agent_id=response.agent_id,
        agent_token=response.agent_token,
        controller_version=response.controller_version,
        heartbeat_interval_ms=response.heartbeat_interval_ms,
    )


def register_response_from_proto(message: pb.RegisterResponse) -> RegisterResponse:
    """The dataclass form of a registration's answer."""
    return RegisterResponse(
        agent_id=message.agent_id,
        agent_token=message.agent_token,
        controller_version=message.controller_version,
        heartbeat_interval_ms=message.heartbeat_interval_ms,
    )


def lease_request_to_proto(request: LeaseRequest) -> pb.LeaseRequest:
    """The wire form of the request that opens a lease stream."""
    return pb.LeaseRequest(
        agent_id=request.agent_id,
        free_slots=request.free_slots,
        running_lease_ids=list(request.running_lease_ids),
    )


def lease_request_from_proto(message: pb.LeaseRequest) -> LeaseRequest:
    """The dataclass form of the request that opens a lease stream."""
    return LeaseRequest(
        agent_id=message.agent_id,
        free_slots=message.free_slots,
        running_lease_ids=tuple(message.running_lease_ids),
    )


def lease_event_to_proto(event: LeaseEvent) -> pb.LeaseEvent:
    """The wire form of one lease stream event."""
    if isinstance(event, StageLease):
        lease = pb.StageLease(
            lease_id=event.lease_id,
            run_id=event.run_id,
            stage_run_id=event.stage_run_id,
            attempt=event.attempt,
            spec=spec_to_proto(event.spec),
        )
        _set_time(lease.deadline, event.deadline)
        return pb.LeaseEvent(lease=lease)
    if isinstance(event, CancelStage):
        return pb.LeaseEvent(
            cancel=pb.CancelStage(
                lease_id=event.lease_id,
                reason=_CANCEL_REASON_TO_PROTO[event.reason],
                message=event.message,
            )
        )
    if isinstance(event, Ping):
        ping = pb.Ping()
        _set_time(ping.sent_at, event.sent_at)
        return pb.LeaseEvent(ping=ping)
    return pb.LeaseEvent(drain=pb.Drain(reason=event.reason))


def lease_event_from_proto(message: pb.LeaseEvent) -> LeaseEvent | None:
    """The dataclass form of one lease stream event; None for an event this build does not know."""
    kind = message.WhichOneof("event")
    if kind == "lease":
        lease = message.lease
        return StageLease(
            lease_id=lease.lease_id,
            run_id=lease.run_id,
            stage_run_id=lease.stage_run_id,
            attempt=lease.attempt,
            deadline=timestamp_from_proto(lease.deadline) if lease.HasField("deadline") else None,
            spec=spec_from_proto(lease.spec),
        )
    if kind == "cancel":
        cancel = message.cancel
        return CancelStage(
            lease_id=cancel.lease_id,
            reason=cancel_reason_from_proto(cancel.reason),
            message=cancel.message,
        )
    if kind == "ping":
        ping = message.ping
        return Ping(sent_at=timestamp_from_proto(ping.sent_at) if ping.HasField("sent_at") else None)
    if kind == "drain":
        return Drain(reason=message.drain.reason)
    return None


def extend_lease_response_to_proto(response: ExtendLeaseResponse) -> pb.ExtendLeaseResponse:
    """The wire form of a lease extension's answer."""
    message = pb.ExtendLeaseResponse(cancel_requested=response.cancel_requested)
    if response.cancel_reason is not None:
        message.cancel_reason = _CANCEL_REASON_TO_PROTO[response.cancel_reason]
    _set_time(message.deadline, response.deadline)
    return message


def extend_lease_response_from_proto(message: pb.ExtendLeaseResponse) -> ExtendLeaseResponse:
    """The dataclass form of a lease extension's answer (a reason only when a cancel is requested)."""
    return ExtendLeaseResponse(
        deadline=timestamp_from_proto(message.deadline) if message.HasField("deadline") else None,
        cancel_requested=message.cancel_requested,
        cancel_reason=cancel_reason_from_proto(message.cancel_reason) if message.cancel_requested else None,
    )


def heartbeat_request_to_proto(request: HeartbeatRequest) -> pb.HeartbeatRequest:
    """The wire form of a heartbeat."""
    return pb.HeartbeatRequest(
        agent_id=request.agent_id,
        running_lease_ids=list(request.running_lease_ids),
        free_slots=request.free_slots,
        draining=request.draining,
    )


def heartbeat_request_from_proto(message: pb.HeartbeatRequest) -> HeartbeatRequest:
    """The dataclass form of a heartbeat."""
    return HeartbeatRequest(
        agent_id=message.agent_id,
        running_lease_ids=tuple(message.running_lease_ids),
        free_slots=message.free_slots,
        draining=message.draining,
    )


def heartbeat_response_to_proto(response: HeartbeatResponse) -> pb.HeartbeatResponse:
    """The wire form of a heartbeat's answer."""
    return pb.HeartbeatResponse(
        lost_lease_ids=list(response.lost_lease_ids),
        draining=response.draining,
        operator_drain=response.operator_drain,
    )


def heartbeat_response_from_proto(message: pb.HeartbeatResponse) -> HeartbeatResponse:
    """The dataclass form of a heartbeat's answer."""
    return HeartbeatResponse(
        lost_lease_ids=tuple(message.lost_lease_ids),
        draining=message.draining,
        operator_drain=message.operator_drain,
    )


def stage_update_to_proto(update: StageUpdate) -> pb.StageUpdate:
    """The wire form of a stage status report."""
    return result_to_update(
        update.lease_id,
        ExecutionResult(update.status, update.exit_code, update.message),
        started_at=update.started_at,
        finished_at=update.finished_at,
    )


def stage_update_from_proto(message: pb.StageUpdate) -> StageUpdate:
    """The dataclass form of a stage status report; ValueError for an unspecified or unknown status."""
    result = result_from_update(message)
    return StageUpdate(
        lease_id=message.lease_id,
        status=result.status,
        exit_code=result.exit_code,
        message=result.message,
        started_at=timestamp_from_proto(message.started_at) if message.HasField("started_at") else None,
        finished_at=timestamp_from_proto(message.finished_at) if message.HasField("finished_at") else None,
    )


def artifact_part_to_proto(part: ArtifactPart) -> pb.ArtifactChunk:
    """The wire form of one artifact stream message (a header, or a chunk of content)."""
    if isinstance(part, ArtifactHeader):
        return pb.ArtifactChunk(
            header=pb.ArtifactHeader(
                lease_id=part.lease_id, path=part.path, size=part.size, sha256=part.sha256, stage=part.stage
            )
        )
    return pb.ArtifactChunk(data=bytes(part))


def artifact_part_from_proto(message: pb.ArtifactChunk) -> ArtifactPart | None:
    """The dataclass form of one artifact stream message; None when it carries neither part."""
    kind = message.WhichOneof("part")
    if kind == "header":
        header = message.header
        return ArtifactHeader(
            lease_id=header.lease_id,
            path=header.path,
            size=header.size,
            sha256=header.sha256,
            stage=header.stage,
        )
    if kind == "data":
        return bytes(message.data)
    return None


def artifact_ack_to_proto(ack: ArtifactAck) -> pb.ArtifactAck:
    """The wire form of an upload's acknowledgement."""
    return pb.ArtifactAck(sha256=ack.sha256, size=ack.size, deduplicated=ack.deduplicated)


def artifact_ack_from_proto(message: pb.ArtifactAck) -> ArtifactAck:
    """The dataclass form of an upload's acknowledgement."""
    return ArtifactAck(sha256=message.sha256, size=message.size, deduplicated=message.deduplicated)


# --- AgentService codecs --------------------------------------------------------------------------------

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_AGENT_SERVICE: str = pb.DESCRIPTOR.services_by_name["AgentService"].full_name


@dataclass(frozen=True)
class Method(Generic[_Req, _Resp]):
    """One AgentService RPC as a client needs it: its path and dataclass <-> bytes codecs.

    Pass `serialize` and `deserialize` as a grpc multi-callable's request_serializer and
    response_deserializer, and the call takes and returns dataclasses.
    """

    path: str
    serialize: Callable[[_Req], bytes]
    deserialize: Callable[[bytes], _Resp]


def _method(
    name: str, serialize: Callable[[_Req], bytes], deserialize: Callable[[bytes], _Resp]
) -> Method[_Req, _Resp]:
    if name not in pb.DESCRIPTOR.services_by_name["AgentService"].methods_by_name:
        raise ImportError(f"buildit.proto AgentService has no method {name}")
    return Method(f"/{_AGENT_SERVICE}/{name}", serialize, deserialize)


def _decode_ack_status(data: bytes) -> StageStatus | None:
    """The status a StageUpdateAck says the controller recorded (None when it left it unspecified)."""
    value = pb.StageUpdateAck.FromString(data).status
    return _STATUS_FROM_PROTO.get(value)


def _decode_lease_event(data: bytes) -> LeaseEvent | None:
    return lease_event_from_proto(pb.LeaseEvent.FromString(data))


REGISTER: Method[RegisterRequest, RegisterResponse] = _method(
    "Register",
    lambda request: register_request_to_proto(request).SerializeToString(),
    lambda data: register_response_from_proto(pb.RegisterResponse.FromString(data)),
)
LEASE: Method[LeaseRequest, LeaseEvent | None] = _method(
    "Lease",
    lambda request: lease_request_to_proto(request).SerializeToString(),
    _decode_lease_event,
)
EXTEND_LEASE: Method[str, ExtendLeaseResponse] = _method(
    "ExtendLease",
    lambda lease_id: pb.ExtendLeaseRequest(lease_id=lease_id).SerializeToString(),
    lambda data: extend_lease_response_from_proto(pb.ExtendLeaseResponse.FromString(data)),
)
HEARTBEAT: Method[HeartbeatRequest, HeartbeatResponse] = _method(
    "Heartbeat",
    lambda request: heartbeat_request_to_proto(request).SerializeToString(),
    lambda data: heartbeat_response_from_proto(pb.HeartbeatResponse.FromString(data)),
)
UPDATE_STAGE: Method[StageUpdate, StageStatus | None] = _method(
    "UpdateStage",
    lambda update: stage_update_to_proto(update).SerializeToString(),
    _decode_ack_status,
)
STREAM_LOGS: Method[LogChunk, LogAck] = _method(
    "StreamLogs",
    lambda chunk: log_chunk_to_proto(chunk).SerializeToString(),
    lambda data: log_ack_from_proto(pb.LogAck.FromString(data)),
)
UPLOAD_ARTIFACT: Method[ArtifactPart, ArtifactAck] = _method(
    "UploadArtifact",
    lambda part: artifact_part_to_proto(part).SerializeToString(),
    lambda data: artifact_ack_from_proto(pb.ArtifactAck.FromString(data)),
)
DOWNLOAD_ARTIFACTS: Method[str, ArtifactPart | None] = _method(
    "DownloadArtifacts",
    lambda lease_id: pb.DownloadArtifactsRequest(lease_id=lease_id).SerializeToString(),
    lambda data: artifact_part_from_proto(pb.ArtifactChunk.FromString(data)),
)


def stage_update_ack_to_proto(status: StageStatus) -> pb.StageUpdateAck:
    """The wire form of the controller's answer to a stage update: the status it recorded."""
    return pb.StageUpdateAck(status=_STATUS_TO_PROTO[status])
