"""A big pipeline file never stalls the controller: parsing it happens off the event loop.

A 10,000-stage `needs` chain (within the documented limits, seconds of parsing) is sent to gRPC
ValidatePipeline and to REST; while it is being parsed, the same controller keeps answering other
requests. Before, the parse ran on the loop that serves every agent and request, and nothing else
was answered until it finished. Real controller process, real gRPC and HTTP over loopback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from tests.integration.fleet.harness import Controller

STAGES = 10_000


def chain(stages: int) -> str:
    lines = ['pipeline "big"', 'stage "s0" { run "true"; }']
    lines += [f'stage "s{i}" needs="s{i - 1}" {{ run "true"; }}' for i in range(1, stages)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def controller(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    controller = Controller(tmp_path, database_url).start()
    try:
        yield controller
    finally:
        controller.stop()


def answered_while(controller: Controller, work: threading.Thread) -> int:
    """How many health requests the controller answered while `work` was running."""
    work.start()
    answered = 0
    while work.is_alive():
        status, _, _ = controller.request("GET", "/health")
        if status == 200 and work.is_alive():
            answered += 1
        time.sleep(0.02)
    work.join()
    return answered


def test_validating_a_big_file_over_grpc_leaves_the_controller_responsive(controller: Controller) -> None:
    source = chain(STAGES)
    result: dict[str, pb.ValidatePipelineResponse] = {}

    def validate() -> None:
        with controller.channel() as channel:
            api = pb_grpc.BuildItServiceStub(channel)
            result["answer"] = api.ValidatePipeline(pb.ValidatePipelineRequest(source=source), timeout=120)

    answered = answered_while(controller, threading.Thread(target=validate))
    assert result["answer"].valid and len(result["answer"].stages) == STAGES
    assert answered >= 3, f"only {answered} requests answered while the file was parsed"


def test_storing_and_triggering_a_big_file_over_rest_leaves_the_controller_responsive(
    controller: Controller,
) -> None:
    source = chain(STAGES)
    created: dict[str, str] = {}

    def create_and_trigger() -> None:
        status, body, _ = controller.request("POST", "/api/v1/pipelines", {"config": source})
        assert status == 201, body
        created["id"] = body["id"]
        status, run, _ = controller.request("POST", f"/api/v1/pipelines/{body['id']}/runs", {})
        assert status == 201, run
        created["stages"] = str(len(run["stages"]))

    answered = answered_while(controller, threading.Thread(target=create_and_trigger))
    assert created["stages"] == str(STAGES)
    assert answered >= 3, f"only {answered} requests answered while the file was parsed and planned"
