"""Round trips between the contract dataclasses and the generated proto messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract.types import ExecutionResult, Resources, StageSpec, StageStatus, WorkspaceSource

FULL = StageSpec(
    name="build",
    index=3,
    commands=("make dist", 'echo "$GIT_SHA" > version.txt', ""),
    image="python:3.12",
    env={"GIT_SHA": "0123abcd", "EMPTY": "", "UNICODE": "héllo ✓"},
    secrets={"TOKEN": "s3cr3t", "OTHER": "x=y;z"},
    needs=("test", "lint"),
    artifacts=("dist/*.whl", "version.txt"),
    timeout_s=90.5,
    retries=2,
    labels={"arch": "amd64", "gpu": "true"},
    workdir="sub/dir",
    source=WorkspaceSource(
        repo_url="file:///srv/mirrors/app.git",
        commit_sha="0123456789abcdef0123456789abcdef01234567",
        ref="refs/heads/main",
    ),
    resources=Resources(cpu_millis=1500, memory_bytes=4 * 2**30, pids=512),
)

MINIMAL = StageSpec(name="a", index=0, commands=("true",))


def _through_the_wire(spec: StageSpec) -> StageSpec:
    """Convert, serialize to bytes, parse and convert back: what an agent actually receives."""
    data = convert.spec_to_proto(spec).SerializeToString()
    return convert.spec_from_proto(pb.StageSpec.FromString(data))


@pytest.mark.parametrize("spec", [FULL, MINIMAL], ids=["full", "minimal"])
def test_stage_spec_round_trip(spec: StageSpec) -> None:
    assert convert.spec_from_proto(convert.spec_to_proto(spec)) == spec
    assert _through_the_wire(spec) == spec


def test_proto_fields_mirror_the_dataclass() -> None:
    message = convert.spec_to_proto(FULL)
    assert list(message.commands) == list(FULL.commands)
    assert message.image == "python:3.12"
    assert dict(message.secrets) == FULL.secrets
    assert message.timeout.seconds == 90
    assert message.timeout.nanos == 500_000_000
    assert FULL.source is not None
    assert message.source.commit_sha == FULL.source.commit_sha


def test_minimal_spec_leaves_optional_fields_absent() -> None:
    message = convert.spec_to_proto(MINIMAL)
    assert not message.HasField("image")
    assert not message.HasField("source")
    assert message.HasField("timeout")  # always explicit, so a zero timeout is not the default


def test_empty_image_is_distinct_from_no_image() -> None:
    spec = StageSpec(name="a", index=0, commands=("true",), image="")
    back = _through_the_wire(spec)
    assert back.image == ""
    assert back == spec


@pytest.mark.parametrize("seconds", [0.0, 0.001, 1.1, 59.999999999, 3600.0, 86400 * 30 + 0.25])
def test_timeouts_survive(seconds: float) -> None:
    spec = StageSpec(name="a", index=0, commands=("true",), timeout_s=seconds)
    assert _through_the_wire(spec).timeout_s == seconds


def test_unset_timeout_means_the_default() -> None:
    back = convert.spec_from_proto(pb.StageSpec(name="a", commands=["true"]))
    assert back.timeout_s == convert.DEFAULT_TIMEOUT_S == MINIMAL.timeout_s
    assert back.image is None
    assert back.source is None


@pytest.mark.parametrize("status", list(StageStatus), ids=lambda s: s.name)
def test_every_status_round_trips(status: StageStatus) -> None:
    value = convert.status_to_proto(status)
    assert pb.StageStatus.Name(value) == f"STAGE_STATUS_{status.name}"
    assert convert.status_from_proto(value) is status


def test_status_tables_cover_both_enums() -> None:
    assert len(StageStatus) == len(pb.StageStatus.keys()) - 1


@pytest.mark.parametrize("value", [pb.STAGE_STATUS_UNSPECIFIED, 999])
def test_unspecified_or_unknown_status_is_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="unspecified or unknown"):
        convert.status_from_proto(value)


@pytest.mark.parametrize(
    "result",
    [
        ExecutionResult(StageStatus.SUCCEEDED, exit_code=0),
        ExecutionResult(StageStatus.FAILED, exit_code=2, message="command 1 exited 2"),
        ExecutionResult(StageStatus.TIMED_OUT, message="timed out after 60s"),
        ExecutionResult(StageStatus.ERROR, exit_code=None, message="image not found"),
    ],
)
def test_result_round_trip(result: ExecutionResult) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    finished = started + timedelta(seconds=7)
    update = convert.result_to_update("lease-1", result, started_at=started, finished_at=finished)
    update = pb.StageUpdate.FromString(update.SerializeToString())
    assert update.lease_id == "lease-1"
    assert update.HasField("exit_code") is (result.exit_code is not None)
    assert convert.result_from_update(update) == result
    assert convert.timestamp_from_proto(update.started_at) == started
    assert convert.timestamp_from_proto(update.finished_at) == finished


def test_update_without_times_leaves_them_unset() -> None:
    update = convert.result_to_update("l", ExecutionResult(StageStatus.RUNNING))
    assert not update.HasField("started_at")
    assert not update.HasField("finished_at")
    assert convert.timestamp_from_proto(update.started_at) is None


def test_timestamps_are_utc_instants() -> None:
    moment = datetime(2026, 5, 6, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    stamp = convert.timestamp_to_proto(moment)
    assert stamp is not None
    back = convert.timestamp_from_proto(stamp)
    assert back == moment
    assert back is not None and back.utcoffset() == timedelta(0)
    assert convert.timestamp_to_proto(None) is None
    with pytest.raises(ValueError, match="naive"):
        convert.timestamp_to_proto(datetime(2026, 5, 6))
