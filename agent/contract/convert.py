"""Mapping between the plain dataclasses in `types.py` and the generated `buildit.proto` messages.

Why this module exists: the rest of BuildIt (planner, scheduler, executors, agent runner) works with
the dataclasses only, so the wire format can evolve without touching them. Besides the generated
code in `_gen/` and the controller's `rpc/` package, this is the only module that handles proto
types. Every conversion is total and loss-free for the values the dataclasses allow, so
`spec_from_proto(spec_to_proto(s)) == s` (timeouts are carried with nanosecond precision).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from agent.contract._gen import buildit_pb2 as pb
from agent.contract.types import ExecutionResult, StageSpec, StageStatus, WorkspaceSource

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "duration_from_seconds",
    "result_from_update",
    "result_to_update",
    "seconds_from_duration",
    "source_from_proto",
    "source_to_proto",
    "spec_from_proto",
    "spec_to_proto",
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
