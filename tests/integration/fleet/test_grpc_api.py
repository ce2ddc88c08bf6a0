"""BuildItService, AgentService and the standard gRPC services over real gRPC, on SQLite and PostgreSQL.

A real `buildit controller` process, real `buildit agent` processes (tests/integration/fleet/harness.py),
and clients built from the generated stubs in agent/contract/_gen — exactly what an integration or
grpcurl would use. The zombie-agent test plays the agent itself with the stubs, so it can stop
heartbeating on purpose and then write with a lease that is no longer its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from agent.contract import logmarks
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from controller import __version__
from tests.integration.fleet.harness import Agent, Controller, wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FINISHED = {
    pb.STAGE_STATUS_SUCCEEDED,
    pb.STAGE_STATUS_FAILED,
    pb.STAGE_STATUS_CANCELLED,
    pb.STAGE_STATUS_SKIPPED,
    pb.STAGE_STATUS_TIMED_OUT,
    pb.STAGE_STATUS_ERROR,
}
SLOW_LINES = 20
LOOP = f"i=1; while [ $i -le {SLOW_LINES} ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
SLOW = f'pipeline "slow"\nstage "count" {{ run "{LOOP}"; }}\n'
COMMAND = f"$ {LOOP}"


class Client:
    """The controller's gRPC API, as an integration sees it."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.channel = controller.channel()
        self.api = pb_grpc.BuildItServiceStub(self.channel)
        self.agents = pb_grpc.AgentServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def run(self, run_id: str) -> pb.Run:
        response: pb.GetRunResponse = self.api.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10)
        return response.run

    def stage(self, run_id: str, name: str) -> pb.Stage:
        for stage in self.run(run_id).stages:
            if stage.name == name:
                return stage
        raise AssertionError(f"run {run_id} has no stage {name}")

    def wait_finished(self, run_id: str, timeout: float = 30) -> pb.Run:
        def done() -> pb.Run | None:
            run = self.run(run_id)
            return run if run.status in FINISHED else None

        result: pb.Run = wait_for(done, timeout, f"run {run_id} to finish")
        return result


@pytest.fixture
def controller(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    controller = Controller(tmp_path, database_url).start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def client(controller: Controller) -> Iterator[Client]:
    client = Client(controller)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def worker(controller: Controller, tmp_path: Path) -> Iterator[Agent]:
    """One real agent, online."""
    agent = Agent(tmp_path, controller, "worker", capacity=2, labels="zone=test,disk=ssd")
    try:
        wait_for(
            lambda: any(a["name"] == "worker" and a["status"] == "online" for a in controller.agents()),
            30,
            "the agent to come online",
        )
        yield agent
    finally:
        agent.stop()


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    """Run `call`; it must fail: (status code, details)."""
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
    error: Any = info.value
    return error.code(), error.details() or ""


# --- standard services and validation --------------------------------------------------------------


def test_health_and_reflection(client: Client) -> None:
    for service in ("", "buildit.v1.BuildItService", "buildit.v1.AgentService"):
        response = client.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    code, _ = code_of(
        lambda: client.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    )
    assert code == grpc.StatusCode.NOT_FOUND

    database = ProtoReflectionDescriptorDatabase(client.channel)
    services = set(database.get_services())
    assert {"buildit.v1.AgentService", "buildit.v1.BuildItService", "grpc.health.v1.Health"} <= services
    # The descriptors behind them resolve too, which is what grpcurl needs to build requests.
    pool = descriptor_pool.DescriptorPool(database)
    api = pool.FindServiceByName("buildit.v1.BuildItService")
    assert {m.name for m in api.methods} == {
        "TriggerRun",
        "GetRun",
        "ListRuns",
        "WatchRun",
        "StreamLogs",
        "CancelRun",
        "ListAgents",
        "ValidatePipeline",
        "RetryStage",
        "RerunRun",
        "DrainAgent",
        "GetPipeline",
        "UpdatePipeline",
        "DeletePipeline",
        "RemoveAgent",
    }
    assert pool.FindMessageTypeByName("buildit.v1.StageLease").fields_by_name["lease_id"].number == 1


def test_validate_pipeline(client: Client) -> None:
    broken = 'pipeline "pitfall"\nstage "a" { run "x" }\nstage "b" needs="ghost" { run "y"; }\n'
    response = client.api.ValidatePipeline(
        pb.ValidatePipelineRequest(source=broken, filename="ci/.buildit.kdl"), timeout=10
    )
    assert not response.valid
    assert len(response.diagnostics) >= 1, response
    first = response.diagnostics[0]
    assert first.file == "ci/.buildit.kdl"
    assert (first.line, first.severity) == (2, pb.SEVERITY_ERROR)
    assert first.col > 0 and "terminator" in first.message.lower(), first
    assert "';'" in first.hint and 'stage "a" { run "x"; }' in first.hint, first

    semantic = 'pipeline "p"\nstage "b" needs="ghost" { run "y"; }\n'
    response = client.api.ValidatePipeline(pb.ValidatePipelineRequest(source=semantic), timeout=10)
    assert not response.valid
    assert any("ghost" in d.message and d.line == 2 for d in response.diagnostics), response
    assert all(d.file == ".buildit.kdl" for d in response.diagnostics), response

    hello = (EXAMPLES / "hello.kdl").read_text()
    response = client.api.ValidatePipeline(
        pb.ValidatePipelineRequest(source=hello, filename="hello.kdl"), timeout=10
    )
    assert response.valid and list(response.diagnostics) == [], response


def test_validate_pipeline_lists_the_stages_of_a_valid_file(client: Client) -> None:
    # buildit.proto: ValidatePipelineResponse.stages — "When valid: the stage names in index order."
    hello = (EXAMPLES / "hello.kdl").read_text()
    response = client.api.ValidatePipeline(pb.ValidatePipelineRequest(source=hello), timeout=10)
    assert response.valid
    assert list(response.stages) == ["greet", "count"], response


def test_unknown_ids_are_not_found(client: Client) -> None:
    for run_id in ("", "nope", "00000000-0000-4000-8000-000000000000"):
        for name, call in (
            ("GetRun", lambda r=run_id: client.api.GetRun(pb.GetRunRequest(run_id=r), timeout=10)),
            ("CancelRun", lambda r=run_id: client.api.CancelRun(pb.CancelRunRequest(run_id=r), timeout=10)),
            ("WatchRun", lambda r=run_id: client.api.WatchRun(pb.WatchRunRequest(run_id=r), timeout=10)),
            (
                "StreamLogs",
                lambda r=run_id: client.api.StreamLogs(
                    pb.StreamLogsRequest(run_id=r, stage="build"), timeout=10
                ),
            ),
        ):
            code, details = code_of(call)
            assert code == grpc.StatusCode.NOT_FOUND, (name, run_id, code, details)
            assert repr(run_id) in details, (name, details)
    code, details = code_of(
        lambda: client.api.TriggerRun(pb.TriggerRunRequest(repository="no-such-pipeline"), timeout=10)
    )
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-pipeline" in details


def test_agent_service_authentication(client: Client, controller: Controller) -> None:
    agents = client.agents
    anonymous = [
        ("Heartbeat", lambda md: agents.Heartbeat(pb.HeartbeatRequest(), metadata=md, timeout=10)),
        (
            "ExtendLease",
            lambda md: agents.ExtendLease(pb.ExtendLeaseRequest(lease_id="x"), metadata=md, timeout=10),
        ),
        (
            "UpdateStage",
            lambda md: agents.UpdateStage(
                pb.StageUpdate(lease_id="x", status=pb.STAGE_STATUS_RUNNING), metadata=md, timeout=10
            ),
        ),
        ("Lease", lambda md: next(agents.Lease(pb.LeaseRequest(), metadata=md, timeout=10))),
        (
            "StreamLogs",
            lambda md: next(
                agents.StreamLogs(iter([pb.LogChunk(lease_id="x", seq=1)]), metadata=md, timeout=10)
            ),
        ),
        (
            "UploadArtifact",
            lambda md: agents.UploadArtifact(
                iter([pb.ArtifactChunk(header=pb.ArtifactHeader(lease_id="x"))]), metadata=md, timeout=10
            ),
        ),
    ]
    for metadata in (
        None,
        (("authorization", "Bearer not-a-token"),),
        (("authorization", f"Bearer {controller.token}"),),  # the registration token is not an agent token
        (("authorization", "Basic abc"),),
    ):
        for name, call in anonymous:
            code, details = code_of(lambda c=call, m=metadata: c(m))
            assert code == grpc.StatusCode.UNAUTHENTICATED, (name, metadata, code, details)
            assert "token" in details, details

    def register(token: str, version: str, name: str = "joiner") -> pb.RegisterResponse:
        request = pb.RegisterRequest(
            registration_token=token, name=name, executors=["local"], capacity=1, version=version
        )
        response: pb.RegisterResponse = agents.Register(request, timeout=10)
        return response

    for token in ("wrong", "", controller.token + "x", controller.token[:-1]):
        code, details = code_of(lambda t=token: register(t, __version__))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "registration token" in details, (token, details)
    code, details = code_of(lambda: register(controller.token, "9.9.0"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
    assert "9.9.0" in details and __version__ in details, details
    # Nothing was registered by the refused attempts.
    assert client.api.ListAgents(pb.ListAgentsRequest(), timeout=10).agents == []
    assert controller.agents() == []

    # The right registration token gives an agent token that authenticates, and only its own agent.
    registered = register(controller.token, __version__)
    assert registered.controller_version == __version__ and registered.heartbeat_interval_ms > 0
    metadata = (("authorization", f"Bearer {registered.agent_token}"),)
    answer = agents.Heartbeat(
        pb.HeartbeatRequest(running_lease_ids=["not-mine"]), metadata=metadata, timeout=10
    )
    assert list(answer.lost_lease_ids) == ["not-mine"]
    code, _ = code_of(
        lambda: agents.ExtendLease(pb.ExtendLeaseRequest(lease_id="not-mine"), metadata=metadata, timeout=10)
    )
    assert code == grpc.StatusCode.ABORTED


# --- runs over gRPC, no agent ----------------------------------------------------------------------


def test_list_runs_pages(client: Client, controller: Controller) -> None:
    controller.create_pipeline('pipeline "paged"\nstage "s" { run "true"; }\n')
    triggered = [
        client.api.TriggerRun(pb.TriggerRunRequest(repository="paged", ref="main"), timeout=10).run
        for _ in range(5)
    ]
    assert [r.number for r in triggered] == [1, 2, 3, 4, 5]
    newest_first = [r.id for r in reversed(triggered)]

    everything = client.api.ListRuns(pb.ListRunsRequest(), timeout=10)
    assert [r.id for r in everything.runs] == newest_first and everything.next_page_token == ""

    pages: list[list[str]] = []
    token = ""
    while True:
        page = client.api.ListRuns(pb.ListRunsRequest(page_size=2, page_token=token), timeout=10)
        assert len(page.runs) <= 2
        pages.append([r.id for r in page.runs])
        token = page.next_page_token
        if not token:
            break
        assert len(pages) < 10, pages
    assert [i for page in pages for i in page] == newest_first, pages
    assert [len(p) for p in pages] == [2, 2, 1], pages
    first = client.api.ListRuns(pb.ListRunsRequest(page_size=2), timeout=10)
    assert all(r.pipeline == "paged" and r.status == pb.STAGE_STATUS_QUEUED for r in first.runs)
    for size in (-1, 201):
        code, details = code_of(
            lambda s=size: client.api.ListRuns(pb.ListRunsRequest(page_size=s), timeout=10)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in details, (size, code)
    filtered = client.api.ListRuns(
        pb.ListRunsRequest(statuses=[pb.STAGE_STATUS_SUCCEEDED, pb.STAGE_STATUS_RUNNING]), timeout=10
    )
    assert list(filtered.runs) == []
    assert len(client.api.ListRuns(pb.ListRunsRequest(ref="main"), timeout=10).runs) == 5
    assert list(client.api.ListRuns(pb.ListRunsRequest(ref="other"), timeout=10).runs) == []


def test_list_runs_refuses_page_tokens_it_never_gave_out(client: Client, controller: Controller) -> None:
    controller.create_pipeline('pipeline "tokens"\nstage "s" { run "true"; }\n')
    client.api.TriggerRun(pb.TriggerRunRequest(repository="tokens"), timeout=10)
    failures = []
    for token in ("garbage", "nan", "inf", "-inf", "1e400", "-1e400", "99999999999999"):
        try:
            client.api.ListRuns(pb.ListRunsRequest(page_size=1, page_token=token), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                failures.append(f"{token!r}: {exc.code()} {exc.details()}")
        else:
            failures.append(f"{token!r}: accepted")
    assert not failures, "\n".join(failures)


def test_list_runs_filters_by_repository(client: Client, controller: Controller) -> None:
    # buildit.proto: ListRunsRequest.repository — "Only runs of this repository; empty for all." Until
    # repositories arrive, TriggerRun's `repository` names the pipeline (by name or id): so does this.
    first = controller.create_pipeline('pipeline "first"\nstage "s" { run "true"; }\n')
    controller.create_pipeline('pipeline "second"\nstage "s" { run "true"; }\n')
    mine = client.api.TriggerRun(pb.TriggerRunRequest(repository="first"), timeout=10).run
    client.api.TriggerRun(pb.TriggerRunRequest(repository="second"), timeout=10)
    for repository in ("first", first):
        runs = client.api.ListRuns(pb.ListRunsRequest(repository=repository), timeout=10).runs
        assert [r.id for r in runs] == [mine.id], (repository, [r.pipeline for r in runs])


def test_trigger_run_validates_ref_and_commit_like_the_rest_api(
    client: Client, controller: Controller
) -> None:
    # REST refuses these with 400; over gRPC they must be INVALID_ARGUMENT and store nothing (on
    # PostgreSQL a ref > 255 or a sha > 64 characters overflowed a column: UNKNOWN, and a run number
    # was used up).
    pipeline = controller.create_pipeline('pipeline "refs"\nstage "s" { run "true"; }\n')
    failures = []
    for ref, sha in (
        ("main\nrm -rf /", ""),
        ("b" * 300, ""),
        ("main", "not-hex"),
        ("main", "a" * 65),
        ("ma\x00in", ""),
    ):
        try:
            client.api.TriggerRun(
                pb.TriggerRunRequest(repository="refs", ref=ref, commit_sha=sha), timeout=10
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                failures.append(f"ref={ref[:12]!r} sha={sha[:12]!r}: {exc.code()} {exc.details()[:120]}")
        else:
            failures.append(f"ref={ref[:12]!r} sha={sha[:12]!r}: accepted")
    status, runs, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline}/runs")
    assert status == 200
    failures += [f"stored run {r['number']} (ref {r['branch'][:12]!r})" for r in runs["runs"]]
    # The next valid run is number 1: refused triggers used up no run number.
    run = client.api.TriggerRun(pb.TriggerRunRequest(repository="refs", ref="main"), timeout=10).run
    if run.number != 1:
        failures.append(f"the first accepted run is number {run.number}, not 1")
    assert not failures, "\n".join(failures)


# --- runs over gRPC with a real agent --------------------------------------------------------------


def test_trigger_get_and_watch_a_run_to_success(
    client: Client, controller: Controller, worker: Agent
) -> None:
    agents = client.api.ListAgents(pb.ListAgentsRequest(), timeout=10).agents
    assert [a.name for a in agents] == ["worker"]
    (agent,) = agents
    assert agent.status == pb.AGENT_STATUS_ONLINE
    assert dict(agent.labels) == {"zone": "test", "disk": "ssd"}
    assert list(agent.executors) == ["local"] and agent.capacity == 2 and agent.version == __version__
    assert agent.last_seen.seconds > 0 and agent.registered_at.seconds > 0
    online = client.api.ListAgents(pb.ListAgentsRequest(status=pb.AGENT_STATUS_ONLINE), timeout=10)
    assert [a.name for a in online.agents] == ["worker"]
    offline = client.api.ListAgents(pb.ListAgentsRequest(status=pb.AGENT_STATUS_OFFLINE), timeout=10)
    assert list(offline.agents) == []

    pipeline = controller.create_pipeline(
        'pipeline "watched"\n'
        'stage "first" { run "echo one; sleep 0.5"; }\n'
        'stage "second" needs="first" { run "echo two"; }\n'
    )
    by_name = client.api.TriggerRun(
        pb.TriggerRunRequest(repository="watched", ref="main", commit_sha="abc123"), timeout=10
    ).run
    assert by_name.id and by_name.number == 1 and by_name.pipeline == "watched"
    assert (by_name.ref, by_name.commit_sha, by_name.trigger) == ("main", "abc123", pb.RUN_TRIGGER_API)
    assert [s.name for s in by_name.stages] == ["first", "second"]
    assert list(by_name.stages[1].needs) == ["first"]

    events = list(client.api.WatchRun(pb.WatchRunRequest(run_id=by_name.id), timeout=30))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "snapshot", kinds
    assert events[0].snapshot.id == by_name.id and len(events[0].snapshot.stages) == 2
    assert events[0].snapshot.status not in FINISHED, events[0]
    assert "stage_updated" in kinds, kinds
    assert kinds[-1] == "run_updated" and events[-1].run_updated.status == pb.STAGE_STATUS_SUCCEEDED, events[
        -1
    ]
    assert all(e.run_updated.status not in FINISHED for e in events[1:-1] if e.HasField("run_updated"))
    updated = {e.stage_updated.name: e.stage_updated for e in events if e.HasField("stage_updated")}
    assert set(updated) == {"first", "second"}, kinds

    run = client.run(by_name.id)
    assert run.status == pb.STAGE_STATUS_SUCCEEDED
    assert run.started_at.seconds > 0 and run.finished_at.seconds >= run.started_at.seconds
    for stage in run.stages:
        assert (
            stage.status == pb.STAGE_STATUS_SUCCEEDED and stage.HasField("exit_code") and stage.exit_code == 0
        )
        assert (stage.attempt, stage.agent_name) == (1, "worker") and stage.agent_id == agent.id
        assert stage.log_size > 0
    # Watching a finished run: the snapshot, then the stream ends.
    again = list(client.api.WatchRun(pb.WatchRunRequest(run_id=run.id), timeout=10))
    assert [e.WhichOneof("event") for e in again] == ["snapshot"]
    assert again[0].snapshot.status == pb.STAGE_STATUS_SUCCEEDED

    by_id = client.api.TriggerRun(pb.TriggerRunRequest(repository=pipeline), timeout=10).run
    assert by_id.number == 2 and by_id.ref == "main"
    assert client.wait_finished(by_id.id).status == pb.STAGE_STATUS_SUCCEEDED


def test_stream_logs_follow_and_offset(client: Client, controller: Controller, worker: Agent) -> None:
    controller.create_pipeline(SLOW)
    run = client.api.TriggerRun(pb.TriggerRunRequest(repository="slow"), timeout=10).run
    wait_for(lambda: client.stage(run.id, "count").status == pb.STAGE_STATUS_RUNNING, 30, "the stage to run")
    lines: list[str] = []
    offsets: list[int] = []
    arrivals: list[float] = []
    for response in client.api.StreamLogs(
        pb.StreamLogsRequest(run_id=run.id, stage="count", follow=True), timeout=30
    ):
        arrivals.append(time.monotonic())
        lines += [line.text for line in response.lines]
        offsets.append(response.next_offset)
    ended = time.monotonic()
    # The log as stored: BuildIt's marked header and closing line around the output.
    output = [f"line-{i}" for i in range(1, SLOW_LINES + 1)]
    expected = [
        logmarks.line(logmarks.CMD, 1, 1, text=COMMAND),
        *output,
        logmarks.line(logmarks.END, "succeeded", 0, 1, text="buildit: stage succeeded (1 command)"),
    ]
    assert lines == expected
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
    # Lines were delivered while the stage ran, not all at its end.
    assert len(arrivals) >= 3 and ended - arrivals[0] > 0.5, (len(arrivals), ended - arrivals[0])
    # The stream ended because the stage ended.
    stage = client.stage(run.id, "count")
    assert stage.status == pb.STAGE_STATUS_SUCCEEDED
    assert offsets[-1] == stage.log_size

    full = controller.log(_pipeline_id(controller, "slow"), run.number, "count")
    assert full.splitlines() == [COMMAND, *output]
    for skip in (1, 7, SLOW_LINES):
        offset = len("".join(line + "\n" for line in expected[:skip]).encode())
        rest = list(
            client.api.StreamLogs(
                pb.StreamLogsRequest(run_id=run.id, stage="count", offset=offset), timeout=10
            )
        )
        assert [line.text for r in rest for line in r.lines] == expected[skip:], skip
        assert rest[-1].next_offset == stage.log_size
    # From the end (with or without follow, the stage being finished): nothing more.
    for follow in (False, True):
        tail = client.api.StreamLogs(
            pb.StreamLogsRequest(run_id=run.id, stage="count", offset=stage.log_size, follow=follow),
            timeout=10,
        )
        assert [line.text for r in tail for line in r.lines] == []
    whole = client.api.StreamLogs(pb.StreamLogsRequest(run_id=run.id, stage="count", attempt=1), timeout=10)
    assert [line.text for r in whole for line in r.lines] == expected


def _pipeline_id(controller: Controller, name: str) -> str:
    status, body, _ = controller.request("GET", "/api/v1/pipelines")
    assert status == 200
    return next(str(p["id"]) for p in body["pipelines"] if p["name"] == name)


def test_cancel_a_running_run(client: Client, controller: Controller, worker: Agent, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    controller.create_pipeline(
        f'pipeline "cancelled"\nstage "sleepy" {{ run "touch {marker}; sleep 60"; }}\n'
        'stage "later" needs="sleepy" { run "true"; }\n'
    )
    run = client.api.TriggerRun(pb.TriggerRunRequest(repository="cancelled"), timeout=10).run
    wait_for(marker.exists, 30, "the stage to start")
    wait_for(lambda: client.stage(run.id, "sleepy").status == pb.STAGE_STATUS_RUNNING, 10, "running")
    started = time.monotonic()
    response = client.api.CancelRun(pb.CancelRunRequest(run_id=run.id, reason="test"), timeout=10).run
    assert response.id == run.id
    finished = client.wait_finished(run.id, timeout=10)
    assert time.monotonic() - started < 5
    assert finished.status == pb.STAGE_STATUS_CANCELLED, finished
    assert [s.status for s in finished.stages] == [pb.STAGE_STATUS_CANCELLED] * 2
    # Cancelling a finished run is refused (409 on REST), and changes nothing.
    with pytest.raises(grpc.RpcError) as refused:
        client.api.CancelRun(pb.CancelRunRequest(run_id=run.id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already finished" in (refused.value.details() or "")
    assert client.run(run.id).status == pb.STAGE_STATUS_CANCELLED
    wait_for(lambda: controller.agents()[0]["running"] == 0, 10, "the agent to free its slot")


# --- a zombie agent --------------------------------------------------------------------------------


def test_zombie_agent_writes_are_refused_after_its_lease_expired(
    client: Client, controller: Controller, tmp_path: Path
) -> None:
    agents = client.agents
    registered = agents.Register(
        pb.RegisterRequest(
            registration_token=controller.token,
            name="zombie",
            executors=["local"],
            capacity=1,
            version=__version__,
        ),
        timeout=10,
    )
    auth = (("authorization", f"Bearer {registered.agent_token}"),)
    stream = agents.Lease(
        pb.LeaseRequest(agent_id=registered.agent_id, free_slots=1), metadata=auth, timeout=60
    )
    wait_for(
        lambda: any(a["name"] == "zombie" and a["status"] == "online" for a in controller.agents()),
        10,
        "the zombie's lease stream",
    )
    pipeline = controller.create_pipeline(
        'pipeline "haunted"\nstage "only" { run "echo healthy run; sleep 2; echo done"; }\n'
    )
    number = controller.trigger(pipeline)
    event = next(stream)
    while event.WhichOneof("event") != "lease":
        event = next(stream)
    lease = event.lease
    assert lease.attempt == 1 and lease.spec.name == "only"
    # Gone from the network: its lease stream drops, so nothing more is offered to it.
    stream.cancel()

    ack = agents.UpdateStage(
        pb.StageUpdate(lease_id=lease.lease_id, status=pb.STAGE_STATUS_RUNNING), metadata=auth, timeout=10
    )
    assert ack.status == pb.STAGE_STATUS_RUNNING
    chunk = pb.LogChunk(lease_id=lease.lease_id, seq=1, lines=[pb.LogLine(text="zombie attempt 1")])
    (log_ack,) = list(agents.StreamLogs(iter([chunk]), metadata=auth, timeout=10))
    assert (log_ack.acked_seq, log_ack.lease_lost) == (1, False)
    assert controller.stage(pipeline, number, "only")["status"] == "running"

    # It stops heartbeating; the lease (TTL 2 s) expires and the stage goes to a healthy agent.
    healthy = Agent(tmp_path, controller, "healthy")
    try:
        wait_for(
            lambda: (
                (s := controller.stage(pipeline, number, "only"))["attempt"] == 2
                and s["agent"] == "healthy"
                and s["status"] == "running"
            ),
            30,
            "the stage to run again on the healthy agent",
        )
        _zombie_writes(agents, auth, lease.lease_id)
        run = controller.wait_run(pipeline, number, timeout=30)
        settled = controller.run(pipeline, number)
        _zombie_writes(agents, auth, lease.lease_id)
    finally:
        healthy.stop()

    assert run["status"] == "succeeded", run
    (stage,) = run["stages"]
    assert (stage["status"], stage["attempt"], stage["agent"], stage["exit_code"]) == (
        "succeeded",
        2,
        "healthy",
        0,
    )
    expected = "$ echo healthy run; sleep 2; echo done\nhealthy run\ndone\n"
    assert controller.log(pipeline, number, "only") == expected
    assert stage["log_size"] == len(controller.raw_log(pipeline, number, "only").encode())
    assert controller.log(pipeline, number, "only", attempt=1) == "zombie attempt 1\n"
    # The late writes changed nothing.
    assert controller.run(pipeline, number) == settled
    assert client.run(run["id"]).stages[0].status == pb.STAGE_STATUS_SUCCEEDED


def _zombie_writes(agents: pb_grpc.AgentServiceStub, auth: Any, lease_id: str) -> None:
    """Every write a zombie could make with its old lease id: each refused."""
    for status in (pb.STAGE_STATUS_SUCCEEDED, pb.STAGE_STATUS_FAILED, pb.STAGE_STATUS_RUNNING):
        code, details = code_of(
            lambda s=status: agents.UpdateStage(
                pb.StageUpdate(lease_id=lease_id, status=s, exit_code=0), metadata=auth, timeout=10
            )
        )
        assert code == grpc.StatusCode.ABORTED and lease_id in details, (status, code, details)
    code, details = code_of(
        lambda: agents.ExtendLease(pb.ExtendLeaseRequest(lease_id=lease_id), metadata=auth, timeout=10)
    )
    assert code == grpc.StatusCode.ABORTED, (code, details)
    late = [
        pb.LogChunk(lease_id=lease_id, seq=seq, lines=[pb.LogLine(text=f"zombie late {seq}")])
        for seq in (1, 2)
    ]
    acks = list(agents.StreamLogs(iter(late), metadata=auth, timeout=10))
    assert [(a.lease_id, a.lease_lost) for a in acks] == [(lease_id, True)] * 2, acks
    beat = agents.Heartbeat(
        pb.HeartbeatRequest(running_lease_ids=[lease_id], free_slots=0), metadata=auth, timeout=10
    )
    assert list(beat.lost_lease_ids) == [lease_id]
