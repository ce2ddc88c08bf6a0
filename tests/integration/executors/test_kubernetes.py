"""The Kubernetes executor through the REAL `kubernetes` client against a loopback FAKE API server.

What is real: the client library (HTTP, serialization, raw streaming), the executor's watch, log
reader and lifecycle. What is fake: the API server and its "kubelet" (`tests.support.fake_kube_api`),
which no machine here can run for real; the tests script what the container prints and how it ends.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from agent.contract.types import ExecutionResult, StageSpec, StageStatus, WorkspaceSource
from agent.executors.base import StageContext, outcome_message
from agent.executors.kubecheck import check_manifest
from agent.executors.kubepod import PodSettings, pod_manifest
from agent.executors.kubernetes import KubernetesExecutor
from tests.support.fake_kube_api import FakeKubeAPI

NS = "builds"
NODE = "node-a"
H = b"\x1e\x1f"  # the script's command header marker
CONTEXT = StageContext(lease_id="lease-1", attempt=2, run_id="run-1")


@pytest.fixture
def fake() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(namespace=NS, node=NODE) as api:
        yield api


def _settings() -> PodSettings:
    return PodSettings(node_name=NODE, namespace=NS, helper_image="buildit:test")


def _spec(*commands: str, **kwargs: object) -> StageSpec:
    return StageSpec(name="build", index=0, commands=commands, image="alpine:3.20", **kwargs)  # type: ignore[arg-type]


def _run(
    fake: FakeKubeAPI,
    spec: StageSpec,
    kubelet: Callable[[str, asyncio.Event, asyncio.AbstractEventLoop, KubernetesExecutor], None] | None,
    *,
    context: StageContext = CONTEXT,
    tmp_path: Path = Path("/nonexistent"),
    **options: float,
) -> tuple[ExecutionResult, list[str], KubernetesExecutor]:
    """Run `spec` with the executor while `kubelet(pod_name, cancel, loop, executor)` scripts the pod."""
    lines: list[str] = []

    async def go() -> tuple[ExecutionResult, KubernetesExecutor]:
        configuration = k8s.Configuration()
        configuration.host = fake.url
        executor = KubernetesExecutor.connect(_settings(), k8s.ApiClient(configuration))
        for key, value in options.items():
            setattr(executor, key, value)
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []

        def script() -> None:
            try:
                assert kubelet is not None
                kubelet(fake.wait_for_pod(), cancel, loop, executor)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        thread = threading.Thread(target=script, daemon=True) if kubelet is not None else None
        if thread is not None:
            thread.start()
        try:
            result = await executor.run(spec, tmp_path, lines.append, cancel, context)
        finally:
            await executor.close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 30)
        if errors:
            raise errors[0]
        return result, executor

    result, executor = asyncio.run(go())
    return result, lines, executor


def _gone(fake: FakeKubeAPI) -> None:
    """The pod and its secret were deleted at the end; the secret by the pod's ownerReference."""
    assert fake.pods == {}
    assert fake.secrets == {}
    assert [p["metadata"]["name"] for p in fake.deleted_pods] == fake.deleted_secrets
    assert fake.requests_to("DELETE", "/secrets/") == 0
    deleted = fake.deleted_pods[0]
    assert "propagationPolicy=Background" in next(q for m, p, q in fake.requests if m == "DELETE")
    assert deleted["metadata"]["deletionTimestamp"]


def test_log_and_exit_code_arrive_exactly_and_everything_is_deleted(fake: FakeKubeAPI) -> None:
    output = H + b"1\nhello\nw\xc3\xb6rld\n\n" + b"partial" + H + b"2\nlast line without newline"

    def kubelet(name: str, *_: object) -> None:
        fake.script(name, output, exit_code=0)

    result, lines, _ = _run(fake, _spec("echo hello", "printf x"), kubelet)
    assert result == ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)
    assert lines == [
        "$ echo hello",
        "hello",
        "wörld",
        "",
        "partial",
        "$ printf x",
        "last line without newline",
    ]
    _gone(fake)


def test_the_created_pod_and_secret_pass_check_manifest(fake: FakeKubeAPI) -> None:
    seen: dict[str, object] = {}

    def kubelet(name: str, *_: object) -> None:
        fake.wait_until(lambda: bool(fake.secrets[name]["metadata"].get("ownerReferences")))
        seen["pod"] = copy.deepcopy(fake.pods[name])
        seen["secret"] = copy.deepcopy(fake.secrets[name])
        fake.script(name, b"", exit_code=0)

    source = WorkspaceSource(repo_url="http://controller:8080/git/app.git", commit_sha="a" * 40, ref="main")
    spec = _spec("make", source=source, secrets={"TOKEN": "s3cr3t-value"})
    context = StageContext(lease_id="lease-7", attempt=1, run_id="run-7", source_token="agent-token")
    result, _, _ = _run(fake, spec, kubelet, context=context)
    assert result.status is StageStatus.SUCCEEDED
    pod, secret = seen["pod"], seen["secret"]
    assert isinstance(pod, dict) and isinstance(secret, dict)
    assert check_manifest(pod) == []
    assert check_manifest(secret) == []
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    assert pod["metadata"]["labels"]["buildit.io/lease"] == "lease-7"
    # The checkout's credentials are in the Secret only: no secret value in the Pod object.
    assert "agent-token" not in str(pod) and "s3cr3t-value" not in str(pod)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["checkout"]


def test_a_failing_stage_names_its_command_and_exit_code(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.script(name, H + b"1\nok\n" + H + b"2\nboom\n", exit_code=3)

    spec = _spec("true", "make test", "never")
    result, lines, _ = _run(fake, spec, kubelet)
    assert (result.status, result.exit_code, result.command) == (StageStatus.FAILED, 3, 2)
    assert outcome_message(result, spec.commands) == 'command 2 of 3 failed: "make test" exited with 3'
    assert lines == ["$ true", "ok", "$ make test", "boom"]
    _gone(fake)


def test_oom_killed_with_exit_code_zero_is_a_failure(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.script(name, H + b"1\nallocating\n", exit_code=0, reason="OOMKilled")

    result, lines, _ = _run(fake, _spec("big"), kubelet)
    assert result.status is StageStatus.FAILED
    assert result.oom_killed and result.exit_code == 0 and result.command == 1
    assert "out of memory" in result.message
    assert lines == ["$ big", "allocating"]


def test_eviction_is_infrastructure_and_keeps_the_log(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.schedule(name)
        fake.start(name)
        fake.write_log(name, H + b"1\nbefore eviction\n")
        fake.evict(name)
        fake.terminate(name, 137)

    result, lines, _ = _run(fake, _spec("sleep 100"), kubelet)
    assert result.status is StageStatus.ERROR and result.infrastructure
    assert result.message.startswith("infrastructure: evicted by Kubernetes: The node was low on resource")
    assert lines == ["$ sleep 100", "before eviction"]
    _gone(fake)


def test_an_invalid_image_is_a_configuration_error(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.schedule(name)
        fake.image_pull_error(name, "InvalidImageName", 'couldn\'t parse image name "alpine::bad"')

    result, lines, _ = _run(fake, _spec("true"), kubelet)
    assert result.status is StageStatus.ERROR and not result.infrastructure
    assert result.message.startswith("invalid image name 'alpine:3.20'")
    assert lines == []
    _gone(fake)


def test_an_image_that_does_not_exist_fails_after_the_pull_grace(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.schedule(name)
        message = 'rpc error: code = NotFound desc = failed to pull "alpine:3.20": manifest unknown'
        fake.image_pull_error(name, "ErrImagePull", message)

    result, _, _ = _run(fake, _spec("true"), kubelet, waiting_grace_s=0.0)
    assert result.status is StageStatus.ERROR and not result.infrastructure
    assert "could not pull image 'alpine:3.20'" in result.message and "manifest unknown" in result.message


def test_an_unschedulable_pod_is_infrastructure_with_the_schedulers_message(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.unschedulable(name, "0/3 nodes are available: 3 Insufficient memory.")

    result, _, _ = _run(fake, _spec("true"), kubelet, pending_timeout_s=1.0)
    assert result.status is StageStatus.ERROR and result.infrastructure
    assert "not scheduled" in result.message and "3 Insufficient memory" in result.message
    _gone(fake)


def test_a_409_on_create_adopts_the_existing_pod(fake: FakeKubeAPI) -> None:
    spec = _spec("echo hi")
    manifest = pod_manifest(spec, lease_id="lease-1", attempt=2, pipeline="run-1", settings=_settings())
    fake.preload_pod(manifest)  # an earlier create went through, but its answer was lost

    def kubelet(name: str, *_: object) -> None:
        fake.wait_until(lambda: fake.requests_to("POST", "/pods") >= 1)
        fake.script(name, H + b"1\nhi\n", exit_code=0)

    result, lines, _ = _run(fake, spec, kubelet)
    assert result.status is StageStatus.SUCCEEDED
    assert lines == ["$ echo hi", "hi"]
    assert fake.requests_to("POST", "/pods") == 1
    assert len(fake.deleted_pods) == 1 and fake.pods == {}


def test_a_409_for_a_pod_of_another_lease_is_refused(fake: FakeKubeAPI) -> None:
    spec = _spec("echo hi")
    manifest = pod_manifest(spec, lease_id="lease-1", attempt=2, pipeline="run-1", settings=_settings())
    manifest["metadata"]["labels"]["buildit.io/lease"] = "someone-else"
    fake.preload_pod(manifest)
    result, _, _ = _run(fake, spec, None)
    assert result.status is StageStatus.ERROR
    assert "already exists and belongs to another lease" in result.message


def test_a_log_stream_dropped_mid_line_loses_and_duplicates_nothing(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.schedule(name)
        fake.drop_log_after(name, 14)  # inside "line two"
        fake.start(name)
        fake.write_log(name, H + b"1\nline one\nline two\n")
        fake.wait_until(lambda: fake.requests_to("GET", f"/pods/{name}/log") >= 2)
        fake.write_log(name, b"line three\nno newline")
        fake.terminate(name, 0)

    result, lines, _ = _run(fake, _spec("cat"), kubelet)
    assert result.status is StageStatus.SUCCEEDED
    assert lines == ["$ cat", "line one", "line two", "line three", "no newline"]


def test_an_expired_watch_relists_and_the_stage_still_finishes(fake: FakeKubeAPI) -> None:
    def lists() -> int:
        return sum(1 for m, p, q in fake.requests if m == "GET" and "spec.nodeName" in q and "watch" not in q)

    def kubelet(name: str, *_: object) -> None:
        fake.schedule(name)
        fake.start(name)
        fake.compact()  # the watch's resourceVersion is now too old: ERROR 410 Expired
        fake.wait_until(lambda: lists() >= 2)
        fake.write_log(name, H + b"1\nafter relist\n")
        fake.terminate(name, 0)

    result, lines, executor = _run(fake, _spec("true"), kubelet)
    assert result.status is StageStatus.SUCCEEDED
    assert lines == ["$ true", "after relist"]
    assert executor.watch_lists >= 2


def test_a_429_on_create_is_retried_after_retry_after(fake: FakeKubeAPI) -> None:
    fake.inject("POST", "pods", 429, "TooManyRequests", retry_after=1)

    def kubelet(name: str, *_: object) -> None:
        fake.script(name, H + b"1\ndone\n", exit_code=0)

    result, lines, _ = _run(fake, _spec("true"), kubelet)
    assert result.status is StageStatus.SUCCEEDED
    assert fake.requests_to("POST", "/pods") == 2
    assert lines == ["$ true", "done"]


def test_a_500_on_create_after_retries_is_an_error_and_leaves_nothing(fake: FakeKubeAPI) -> None:
    fake.inject("POST", "pods", 500, "InternalError", retry_after=0, times=100)
    result, _, _ = _run(fake, _spec("true"), None)
    assert result.status is StageStatus.ERROR
    assert "could not create the stage's pod" in result.message and "500" in result.message
    assert fake.pods == {} and fake.secrets == {}


def test_cancel_stops_the_pod_and_keeps_its_log(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, cancel: asyncio.Event, loop: asyncio.AbstractEventLoop, _: object) -> None:
        fake.schedule(name)
        fake.start(name)
        fake.write_log(name, H + b"1\nworking\n")
        fake.wait_until(lambda: fake.requests_to("GET", f"/pods/{name}/log") >= 1)
        fake.write_log(name, b"still working")
        loop.call_soon_threadsafe(cancel.set)

    result, lines, _ = _run(fake, _spec("sleep 1000"), kubelet)
    assert result == ExecutionResult(StageStatus.CANCELLED, message="cancelled", command=1)
    assert lines == ["$ sleep 1000", "working", "still working"]
    assert fake.requests_to("PATCH", "/pods/") == 1
    assert fake.deleted_pods[0]["spec"]["activeDeadlineSeconds"] == 1
    assert fake.deleted_pods[0]["status"]["reason"] == "DeadlineExceeded"
    _gone(fake)


def test_timeout_stops_the_pod_and_keeps_its_log(fake: FakeKubeAPI) -> None:
    def kubelet(name: str, *_: object) -> None:
        fake.schedule(name)
        fake.start(name)
        fake.write_log(name, H + b"1\nslow\n")

    result, lines, _ = _run(fake, _spec("sleep 1000", timeout_s=1.0), kubelet)
    assert result.status is StageStatus.TIMED_OUT and result.command == 1
    assert lines == ["$ sleep 1000", "slow"]
    assert fake.deleted_pods[0]["status"]["reason"] == "DeadlineExceeded"
    _gone(fake)


@pytest.mark.parametrize(
    ("needs", "artifacts", "what"), [(("a",), (), "needs"), ((), ("dist/",), "declares")]
)
def test_a_stage_with_artifacts_is_refused_plainly(
    fake: FakeKubeAPI, needs: tuple[str, ...], artifacts: tuple[str, ...], what: str
) -> None:
    result, _, _ = _run(fake, _spec("true", needs=needs, artifacts=artifacts), None)
    assert result.status is StageStatus.ERROR
    assert result.message.startswith(f"the kubernetes executor cannot pass artifacts yet: this stage {what}")
    assert fake.requests_to("POST", "/pods") == 0
