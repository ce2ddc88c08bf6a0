"""Round trips of the AgentService messages, and the codecs the agent's gRPC client is built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.types import (
    CancelReason,
    CancelStage,
    Drain,
    ExtendLeaseResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseRequest,
    LogAck,
    LogChunk,
    LogLine,
    Ping,
    RegisterRequest,
    RegisterResponse,
    StageLease,
    StageSpec,
    StageStatus,
    StageUpdate,
)

T1 = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T2 = datetime(2030, 1, 2, 3, 5, 0, tzinfo=UTC)
SPEC = StageSpec(name="build", index=1, commands=("make",), image="alpine:3", secrets={"T": "s"})

ROUND_TRIPS: list[tuple[Any, Any, Any]] = [
    (
        LogChunk(
            "l-1",
            7,
            (
                LogLine("out ✓\nerr"),
                LogLine(""),
                LogLine("buildit: note"),
            ),
        ),
        convert.log_chunk_to_proto,
        convert.log_chunk_from_proto,
    ),
    (LogAck("l-1", 7), convert.log_ack_to_proto, convert.log_ack_from_proto),
    (LogAck("l-1", 0, lease_lost=True), convert.log_ack_to_proto, convert.log_ack_from_proto),
    (
        RegisterRequest("enrol", "host-1", {"arch": "amd64"}, ("docker", "local"), 4, "0.1.0"),
        convert.register_request_to_proto,
        convert.register_request_from_proto,
    ),
    (
        RegisterResponse("a-1", "secret", "0.1.0", 2000),
        convert.register_response_to_proto,
        convert.register_response_from_proto,
    ),
    (
        LeaseRequest("a-1", 2, ("l-1", "l-2")),
        convert.lease_request_to_proto,
        convert.lease_request_from_proto,
    ),
    (
        HeartbeatRequest("a-1", ("l-1",), 1, draining=True),
        convert.heartbeat_request_to_proto,
        convert.heartbeat_request_from_proto,
    ),
    (
        HeartbeatResponse(("l-2",), draining=True),
        convert.heartbeat_response_to_proto,
        convert.heartbeat_response_from_proto,
    ),
    (
        ExtendLeaseResponse(T1, True, CancelReason.TIMEOUT),
        convert.extend_lease_response_to_proto,
        convert.extend_lease_response_from_proto,
    ),
    (
        ExtendLeaseResponse(None),
        convert.extend_lease_response_to_proto,
        convert.extend_lease_response_from_proto,
    ),
    (
        StageUpdate("l-1", StageStatus.FAILED, 3, "exit code 3", T1, T2),
        convert.stage_update_to_proto,
        convert.stage_update_from_proto,
    ),
    (
        StageUpdate("l-1", StageStatus.RUNNING, started_at=T1),
        convert.stage_update_to_proto,
        convert.stage_update_from_proto,
    ),
    (
        StageLease("l-1", "r-1", "s-1", 2, T1, SPEC),
        convert.lease_event_to_proto,
        convert.lease_event_from_proto,
    ),
    (
        StageLease("l-1", "r-1", "s-1", 1, None, SPEC),
        convert.lease_event_to_proto,
        convert.lease_event_from_proto,
    ),
    (
        CancelStage("l-1", CancelReason.LEASE_LOST, "re-leased"),
        convert.lease_event_to_proto,
        convert.lease_event_from_proto,
    ),
    (Ping(T1), convert.lease_event_to_proto, convert.lease_event_from_proto),
    (Ping(), convert.lease_event_to_proto, convert.lease_event_from_proto),
    (Drain("maintenance"), convert.lease_event_to_proto, convert.lease_event_from_proto),
]


@pytest.mark.parametrize(("value", "to_proto", "from_proto"), ROUND_TRIPS)
def test_round_trip(value: Any, to_proto: Any, from_proto: Any) -> None:
    message = to_proto(value)
    assert from_proto(type(message).FromString(message.SerializeToString())) == value


def test_unknown_lease_event_is_none() -> None:
    assert convert.lease_event_from_proto(pb.LeaseEvent()) is None


def test_unspecified_cancel_reason_reads_as_user() -> None:
    event = convert.lease_event_from_proto(pb.LeaseEvent(cancel=pb.CancelStage(lease_id="l")))
    assert event == CancelStage("l", CancelReason.USER)


def test_every_cancel_reason_is_mapped() -> None:
    assert {convert.cancel_reason_to_proto(r) for r in CancelReason} == set(pb.CancelReason.values()) - {0}


def test_a_log_line_is_text_only_and_its_old_fields_are_reserved() -> None:
    # Logs are one combined byte stream per stage: no per-line time or stream is carried, and the
    # numbers and names they had stay reserved so no later field reuses them with another meaning.
    assert [f.name for f in pb.LogLine.DESCRIPTOR.fields] == ["text"]
    assert "LogStream" not in pb.DESCRIPTOR.enum_types_by_name
    # A message from an older peer that still sets field 2 or 3 parses; the fields are ignored.
    old = bytes([0x0A, 0x02]) + b"hi" + bytes([0x12, 0x02, 0x08, 0x01]) + bytes([0x18, 0x02])
    assert convert.log_line_from_proto(pb.LogLine.FromString(old)) == LogLine("hi")


def test_codec_paths_match_the_generated_stub() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.paths: list[str] = []

        def _record(self, path: str, **_: object) -> None:
            self.paths.append(path)

        unary_unary = unary_stream = stream_unary = stream_stream = _record

    recorder = Recorder()
    pb_grpc.AgentServiceStub(recorder)
    codecs = [
        convert.REGISTER,
        convert.LEASE,
        convert.EXTEND_LEASE,
        convert.HEARTBEAT,
        convert.UPDATE_STAGE,
        convert.STREAM_LOGS,
    ]
    assert {c.path for c in codecs} <= set(recorder.paths)


def test_codecs_speak_the_wire_format() -> None:
    request = HeartbeatRequest("a-1", ("l-1",), 0, True)
    wire = convert.HEARTBEAT.serialize(request)
    assert pb.HeartbeatRequest.FromString(wire).draining
    assert convert.EXTEND_LEASE.serialize("l-9") == pb.ExtendLeaseRequest(lease_id="l-9").SerializeToString()
    ack = pb.StageUpdateAck(status=pb.STAGE_STATUS_CANCELLED).SerializeToString()
    assert convert.UPDATE_STAGE.deserialize(ack) is StageStatus.CANCELLED
    assert convert.UPDATE_STAGE.deserialize(b"") is None
    event = pb.LeaseEvent(drain=pb.Drain(reason="x")).SerializeToString()
    assert convert.LEASE.deserialize(event) == Drain("x")


@pytest.mark.parametrize("status", list(StageStatus))
def test_the_controllers_stage_update_ack_reads_back_as_the_status_it_recorded(status: StageStatus) -> None:
    wire = convert.stage_update_ack_to_proto(status).SerializeToString()
    assert convert.UPDATE_STAGE.deserialize(wire) is status
