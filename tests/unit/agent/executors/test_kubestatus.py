"""agent.executors.kubestatus: verdicts on pod status documents transcribed from real reports.

The documents (and the report each comes from) are in `pod_status`. Times are fixed: `now` is
given, so grace periods and the pending timeout are decided without waiting.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.contract.types import StageStatus
from agent.executors.kubestatus import PodOutcome, PodVerdict, classify
from tests.unit.agent.executors import pod_status as reports

CREATED = datetime(2026, 5, 29, 7, 10, 0, tzinfo=UTC)
INITIALIZED = datetime(2026, 5, 29, 7, 10, 20, tzinfo=UTC)
SOON = INITIALIZED + timedelta(seconds=5)  # within the 30 s grace of a waiting container
LATER = INITIALIZED + timedelta(minutes=2)  # past that grace, within the 10 min pending timeout
MUCH_LATER = CREATED + timedelta(minutes=11)  # past the pending timeout


def verdict(pod: dict[str, Any], now: datetime = LATER, **kwargs: Any) -> PodVerdict:
    return classify(pod, now=now, **kwargs)


def test_oom_killed_with_137_fails_the_stage_naming_the_memory_limit() -> None:
    result = verdict(reports.OOM_KILLED_137)
    assert result == PodVerdict(PodOutcome.FAILED, 137, "out of memory (memory limit 4Gi)", oom_killed=True)
    assert result.status is StageStatus.FAILED and result.finished and not result.infrastructure


def test_oom_killed_with_exit_code_0_is_still_a_failure() -> None:
    result = verdict(reports.OOM_KILLED_EXIT_0)
    assert result == PodVerdict(PodOutcome.FAILED, 0, "out of memory (memory limit 4Gi)", oom_killed=True)
    assert result.status is StageStatus.FAILED
    without_limit = copy.deepcopy(reports.OOM_KILLED_EXIT_0)
    without_limit["spec"]["containers"][0]["resources"] = {}
    assert verdict(without_limit).message == "out of memory"


def test_a_lost_container_with_137_is_infrastructure_not_the_stages_exit_code() -> None:
    result = verdict(reports.CONTAINER_STATUS_UNKNOWN)
    assert result.kind is PodOutcome.INFRASTRUCTURE and result.infrastructure
    assert result.exit_code is None
    assert result.message == (
        "Kubernetes lost the stage's container: "
        "The container could not be located when the pod was terminated"
    )
    assert result.status is StageStatus.ERROR


def test_an_evicted_pod_is_infrastructure_with_the_kubelets_reason() -> None:
    result = verdict(reports.EVICTED)
    assert result.infrastructure
    assert result.message == (
        "evicted by Kubernetes: The node was low on resource: ephemeral-storage. Container sparkoperator "
        "was using 31748Ki, which exceeds its request of 0."
    )


def test_a_disruption_target_outranks_an_exit_code_of_0() -> None:
    result = verdict(reports.DISRUPTION_TARGET)
    assert result.infrastructure
    assert result.message.startswith(
        "stopped by Kubernetes (TerminationByKubelet): The node was low on resource: ephemeral-storage."
    )
    # The same pod without the condition would have been a success: the condition decides.
    completed = copy.deepcopy(reports.DISRUPTION_TARGET)
    completed["status"]["conditions"] = completed["status"]["conditions"][1:]
    assert verdict(completed) == PodVerdict(PodOutcome.SUCCEEDED, 0)


def test_a_pod_the_kubelet_rejected_is_infrastructure() -> None:
    result = verdict(reports.OUT_OF_CPU)
    assert result.infrastructure
    assert result.message == (
        "the pod failed without recording the stage's exit code: Pod was rejected: Node didn't have "
        "enough resource: cpu, requested: 150, used: 11388, capacity: 11500"
    )


def test_an_invalid_image_name_is_a_configuration_error_at_once() -> None:
    result = verdict(reports.INVALID_IMAGE_NAME, now=SOON)
    assert result.kind is PodOutcome.CONFIG_ERROR and not result.infrastructure
    assert result.status is StageStatus.ERROR
    assert result.message.startswith(
        "invalid image name 'images:ubuntu/24.04': Failed to apply default image tag"
    )


def test_image_pull_failures_wait_out_the_grace_period_then_are_classified_by_message() -> None:
    not_found = reports.ERR_IMAGE_PULL_NOT_FOUND
    waiting = verdict(not_found, now=SOON)
    assert waiting.kind is PodOutcome.PENDING and waiting.status is None and not waiting.finished
    assert waiting.message.startswith("ErrImagePull: rpc error: code = NotFound")
    late = verdict(not_found, now=LATER)
    assert late.kind is PodOutcome.CONFIG_ERROR  # "not found": no other node will find it either
    assert late.message.startswith("could not pull image 'python:3.99': rpc error: code = NotFound")
    # A back-off only says "Back-off pulling image": maybe the registry, so try elsewhere.
    backoff = verdict(reports.image_pull_back_off(), now=LATER)
    assert backoff.infrastructure
    assert backoff.message == (
        "could not pull image 'tusenka/post-install-db-init:1.0.0': "
        'Back-off pulling image "tusenka/post-install-db-init:1.0.0"'
    )
    assert verdict(reports.image_pull_back_off(), now=SOON).kind is PodOutcome.PENDING
    assert verdict(reports.image_pull_back_off(), now=SOON, waiting_grace_s=1).infrastructure


def test_create_container_config_error_is_a_configuration_error_after_the_grace_period() -> None:
    assert verdict(reports.CREATE_CONTAINER_CONFIG_ERROR, now=SOON).kind is PodOutcome.PENDING
    result = verdict(reports.CREATE_CONTAINER_CONFIG_ERROR, now=LATER)
    assert result == PodVerdict(
        PodOutcome.CONFIG_ERROR,
        message="could not create container 'stage': secret \"github-secrets\" not found",
    )


def test_the_grace_of_the_stage_container_starts_when_the_checkout_finished() -> None:
    # 23 s after the pod started but only 5 s after the init containers finished: still waiting.
    assert verdict(reports.ERR_IMAGE_PULL_NOT_FOUND, now=SOON, waiting_grace_s=20).kind is PodOutcome.PENDING
    not_initialized = copy.deepcopy(reports.ERR_IMAGE_PULL_NOT_FOUND)
    not_initialized["status"]["conditions"][1]["status"] = "False"  # measured from startTime instead
    assert verdict(not_initialized, now=SOON, waiting_grace_s=20).kind is PodOutcome.CONFIG_ERROR


def test_a_passed_deadline_is_a_timeout() -> None:
    result = verdict(reports.DEADLINE_EXCEEDED)
    assert result == PodVerdict(
        PodOutcome.TIMED_OUT, message="timed out: Kubernetes stopped the pod at its deadline (720s)"
    )
    assert result.status is StageStatus.TIMED_OUT


def test_succeeded_before_the_exit_code_is_recorded_means_read_again() -> None:
    result = verdict(reports.SUCCEEDED_BEFORE_TERMINATED)
    assert result.kind is PodOutcome.SETTLING
    assert result.status is None and not result.finished


def test_a_pod_deleted_by_someone_else_mid_run_is_infrastructure() -> None:
    message = "the stage's pod was deleted before the stage finished (not by this agent)"
    assert verdict(reports.DELETED_MID_RUN) == PodVerdict(PodOutcome.INFRASTRUCTURE, message=message)
    # A watch DELETED event carries the last state, which may not show the deletion yet.
    assert verdict(reports.RUNNING, deleted=True) == PodVerdict(PodOutcome.INFRASTRUCTURE, message=message)


def test_an_unschedulable_pod_waits_until_the_pending_timeout_then_says_why() -> None:
    assert verdict(reports.UNSCHEDULABLE, now=CREATED + timedelta(minutes=9)).kind is PodOutcome.PENDING
    result = verdict(reports.UNSCHEDULABLE, now=MUCH_LATER)
    assert result.infrastructure
    assert result.message == (
        "the stage's pod was not scheduled within 10m: 0/10 nodes are available: 10 node(s) didn't match "
        "node selector, 4 Insufficient cpu."
    )
    short = verdict(reports.UNSCHEDULABLE, now=CREATED + timedelta(seconds=50), pending_timeout_s=45)
    assert short.message.startswith("the stage's pod was not scheduled within 45s: ")


def test_a_running_checkout_is_progress_not_a_stuck_pod() -> None:
    checkout = copy.deepcopy(reports.UNSCHEDULABLE)
    checkout["status"] = {
        "phase": "Pending",
        "startTime": "2026-05-29T07:10:02Z",
        "conditions": reports.scheduled(initialized=False),
        "initContainerStatuses": [{"name": "checkout", "state": {"running": {"startedAt": reports.STARTED}}}],
        "containerStatuses": reports.stage_status({"waiting": {"reason": "PodInitializing"}}),
    }
    assert verdict(checkout, now=MUCH_LATER).kind is PodOutcome.PENDING


def test_a_failed_checkout_is_reported_with_its_exit_code_and_message() -> None:
    failed = copy.deepcopy(reports.RUNNING)
    failed["status"]["phase"] = "Failed"
    failed["status"]["initContainerStatuses"] = [
        {
            "name": "checkout",
            "state": {
                "terminated": {"exitCode": 128, "reason": "Error", "message": "fatal: bad object a1b2c3"}
            },
        }
    ]
    failed["status"]["containerStatuses"] = reports.stage_status({"waiting": {"reason": "PodInitializing"}})
    assert verdict(failed) == PodVerdict(
        PodOutcome.CONFIG_ERROR,
        message="checkout failed with exit code 128 before the stage started: fatal: bad object a1b2c3",
    )


@pytest.mark.parametrize(
    ("code", "kind"), [(0, PodOutcome.SUCCEEDED), (2, PodOutcome.FAILED)], ids=["ok", "fail"]
)
def test_the_exit_code_comes_from_the_terminated_state(code: int, kind: PodOutcome) -> None:
    done = copy.deepcopy(reports.RUNNING)
    done["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
    reason = "Completed" if code == 0 else "Error"
    done["status"]["containerStatuses"] = reports.stage_status(
        {"terminated": {"exitCode": code, "reason": reason}}
    )
    result = verdict(done)
    assert (result.kind, result.exit_code) == (kind, code)
    assert result.message == ("" if code == 0 else "exited with 2")
    assert verdict(reports.RUNNING) == PodVerdict(PodOutcome.RUNNING)
    assert verdict(reports.RUNNING).status is StageStatus.RUNNING
