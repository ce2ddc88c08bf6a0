"""What a stage Pod's status document says about the stage: one verdict, with a message for users.

Pure: it reads the Pod as the API returns it (a dict, camelCase) and the time now; the executor loop
calls it on every watch event. The rules, and why (evidence in /work/shared/research/k8s.md §1.4):

- The exit code comes from `status.containerStatuses[stage].state.terminated.exitCode`, which the
  kubelet records, never from the log stream (streams end early and lie about success).
- `OOMKilled` is a FAILED stage even with exit code 0 (kubernetes #116042, #131530): the kernel
  killed part of the build, whatever the last process returned.
- `status.reason == DeadlineExceeded` (the pod's `activeDeadlineSeconds`) is TIMED_OUT. The agent's
  own cancel also works by lowering that deadline: it knows it did, and reports CANCELLED itself.
- Eviction (`status.reason == Evicted`), a `DisruptionTarget` condition (drain, preemption, taint
  manager, kubelet pressure), a `ContainerStatusUnknown` state, a pod that failed with no terminated
  state, and a pod deleted by someone else are the cluster's doing, not the stage's: infrastructure
  verdicts, retried elsewhere without spending the stage's retries. They take precedence over an
  exit code, because a container killed by an eviction exits like one that failed (137), or 0 if
  it handled SIGTERM (kubernetes #105467, #141483).
- `InvalidImageName` is a configuration error at once (it never heals). Image pulls failing
  (`ErrImagePull`, `ImagePullBackOff`) and `CreateContainerConfigError`/`CreateContainerError` get
  a grace period first (a registry hiccup heals); past it, a pull that says the image does not exist
  or access is denied is a configuration error, any other pull failure infrastructure.
- A checkout (init container) that fails is a configuration error: the stage never ran, and a
  commit or credential that cannot be fetched here will not be fetched elsewhere either.
- A pod not scheduled (or whose containers never started) within the pending timeout is
  infrastructure, with the pod's conditions' messages (e.g. "0/3 nodes are available: ...").
- Phase `Succeeded` before the stage container's terminated state is recorded is SETTLING: read the
  pod again (Woodpecker saw the phase flip first).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from agent.contract.types import StageStatus

__all__ = ["PodOutcome", "PodVerdict", "classify"]

DEFAULT_PENDING_TIMEOUT_S: Final = 600.0
DEFAULT_WAITING_GRACE_S: Final = 30.0
_MAX_MESSAGE: Final = 300
_PULL_FAILURES: Final = frozenset({"ErrImagePull", "ImagePullBackOff"})
_CREATE_FAILURES: Final = frozenset({"CreateContainerConfigError", "CreateContainerError"})
#: A failed pull whose message says one of these will fail on any node: the image reference is wrong.
_PULL_CONFIG_HINTS: Final = (
    "not found",
    "manifest unknown",
    "repository does not exist",
    "denied",
    "unauthorized",
)


class PodOutcome(enum.StrEnum):
    """The kinds of verdict; `PodVerdict.status` maps each to what the agent reports."""

    PENDING = "pending"  # not started yet; nothing to report
    RUNNING = "running"
    SETTLING = "settling"  # looks finished, the exit code is not recorded yet: read the pod again
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the stage's own failure: exit code (or out of memory)
    TIMED_OUT = "timed_out"
    CONFIG_ERROR = "config_error"  # the stage as written cannot run here (bad image, bad config)
    INFRASTRUCTURE = "infrastructure"  # the cluster's doing: retry elsewhere, retries not spent


_STATUS: Final = {
    PodOutcome.PENDING: None,
    PodOutcome.SETTLING: None,
    PodOutcome.RUNNING: StageStatus.RUNNING,
    PodOutcome.SUCCEEDED: StageStatus.SUCCEEDED,
    PodOutcome.FAILED: StageStatus.FAILED,
    PodOutcome.TIMED_OUT: StageStatus.TIMED_OUT,
    PodOutcome.CONFIG_ERROR: StageStatus.ERROR,
    PodOutcome.INFRASTRUCTURE: StageStatus.ERROR,
}


@dataclass(frozen=True)
class PodVerdict:
    """One reading of a stage Pod.

    `message` is one line for users ("" while all is well). `oom_killed`: the kernel killed the
    stage at its memory limit (the message says which). `infrastructure`: give the lease back so the
    stage runs elsewhere, without spending its retries.
    """

    kind: PodOutcome
    exit_code: int | None = None
    message: str = ""
    oom_killed: bool = False

    @property
    def infrastructure(self) -> bool:
        """True when the cluster, not the stage, ended it (retry elsewhere, retries not spent)."""
        return self.kind is PodOutcome.INFRASTRUCTURE

    @property
    def finished(self) -> bool:
        """True once the verdict cannot change: stop watching, drain logs, delete the pod."""
        status = self.status
        return status is not None and status.finished

    @property
    def status(self) -> StageStatus | None:
        """The stage status to report; None while there is nothing to report (pending, settling)."""
        return _STATUS[self.kind]


def classify(
    pod: Mapping[str, Any],
    *,
    now: datetime,
    deleted: bool = False,
    container: str = "stage",
    pending_timeout_s: float = DEFAULT_PENDING_TIMEOUT_S,
    waiting_grace_s: float = DEFAULT_WAITING_GRACE_S,
) -> PodVerdict:
    """The verdict on a stage Pod as last seen (`deleted`: a watch DELETED event brought it).

    Why one function over the whole document: the signals overlap (an evicted pod also has a
    failed container; a deadline kill also exits 137) and their order is the policy; it is written
    once, here, in the order of the module docstring. `now` must be timezone-aware. Call it only on
    pods the agent did not delete or cancel itself (it knows why those ended).
    """
    status = pod.get("status") or {}
    metadata = pod.get("metadata") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    main = _container_status(status.get("containerStatuses"), container)
    terminated = ((main or {}).get("state") or {}).get("terminated")

    disruption = conditions.get("DisruptionTarget")
    if status.get("reason") == "Evicted":
        return _infra(f"evicted by Kubernetes: {_flat(status.get('message')) or 'no reason given'}")
    if disruption is not None and disruption.get("status") == "True":
        reason = disruption.get("reason") or "DisruptionTarget"
        return _infra(
            f"stopped by Kubernetes ({reason}): {_flat(disruption.get('message')) or 'no reason given'}"
        )
    if status.get("reason") == "DeadlineExceeded":
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        return PodVerdict(
            PodOutcome.TIMED_OUT,
            message=f"timed out: Kubernetes stopped the pod at its deadline ({deadline}s)",
        )
    if terminated is not None:
        return _terminated(pod, terminated, container)
    if deleted or metadata.get("deletionTimestamp"):
        return _infra("the stage's pod was deleted before the stage finished (not by this agent)")
    init_failure = _init_failure(status)
    if init_failure is not None:
        return init_failure
    phase = status.get("phase")
    if phase == "Failed":
        detail = _flat(status.get("message")) or _flat(status.get("reason")) or "no reason given"
        return _infra(f"the pod failed without recording the stage's exit code: {detail}")
    if phase == "Succeeded":
        return PodVerdict(PodOutcome.SETTLING, message="finished; waiting for the exit code to be recorded")
    waiting = _waiting(pod, status, conditions, now, waiting_grace_s)
    if waiting is not None:
        return waiting
    if ((main or {}).get("state") or {}).get("running") is not None:
        return PodVerdict(PodOutcome.RUNNING)
    return _pending(pod, status, conditions, now, pending_timeout_s)


def _terminated(pod: Mapping[str, Any], terminated: Mapping[str, Any], container: str) -> PodVerdict:
    code = terminated.get("exitCode")
    reason = terminated.get("reason")
    if reason == "OOMKilled":
        limit = _memory_limit(pod, container)
        where = f" (memory limit {limit})" if limit else ""
        return PodVerdict(PodOutcome.FAILED, code, f"out of memory{where}", oom_killed=True)
    if reason == "ContainerStatusUnknown":
        return _infra(f"Kubernetes lost the stage's container: {_flat(terminated.get('message')) or reason}")
    if code == 0:
        return PodVerdict(PodOutcome.SUCCEEDED, 0)
    if isinstance(code, int):
        return PodVerdict(PodOutcome.FAILED, code, f"exited with {code}")
    return _infra("the stage's container ended without an exit code")


def _init_failure(status: Mapping[str, Any]) -> PodVerdict | None:
    """A checkout (init container) that ended with an error: the stage never ran."""
    for init in status.get("initContainerStatuses") or []:
        terminated = (init.get("state") or {}).get("terminated")
        if terminated is None or terminated.get("exitCode") == 0:
            continue
        name = init.get("name", "init")
        if terminated.get("reason") == "OOMKilled":
            return PodVerdict(
                PodOutcome.CONFIG_ERROR, message=f"{name} ran out of memory before the stage started"
            )
        detail = _flat(terminated.get("message"))
        suffix = f": {detail}" if detail else ""
        return PodVerdict(
            PodOutcome.CONFIG_ERROR,
            message=f"{name} failed with exit code {terminated.get('exitCode')} "
            f"before the stage started{suffix}",
        )
    return None


def _waiting(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    conditions: Mapping[str, Mapping[str, Any]],
    now: datetime,
    grace_s: float,
) -> PodVerdict | None:
    """A container stuck before it starts: a verdict when it will not heal (or waited too long)."""
    statuses = [
        *((s, True) for s in status.get("initContainerStatuses") or []),
        *((s, False) for s in status.get("containerStatuses") or []),
    ]
    for container, is_init in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        name = container.get("name", "?")
        image = container.get("image", "")
        detail = _flat(waiting.get("message")) or reason
        if reason == "InvalidImageName":
            return PodVerdict(PodOutcome.CONFIG_ERROR, message=f"invalid image name '{image}': {detail}")
        if reason == "CrashLoopBackOff":
            return PodVerdict(PodOutcome.CONFIG_ERROR, message=f"container '{name}' keeps crashing: {detail}")
        if reason not in _PULL_FAILURES and reason not in _CREATE_FAILURES:
            continue
        since = _since(pod, conditions, is_init)
        if since is not None and (now - since).total_seconds() < grace_s:
            return PodVerdict(PodOutcome.PENDING, message=f"{reason}: {detail}")
        if reason in _PULL_FAILURES:
            lowered = detail.lower()
            kind = (
                PodOutcome.CONFIG_ERROR
                if any(hint in lowered for hint in _PULL_CONFIG_HINTS)
                else PodOutcome.INFRASTRUCTURE
            )
            return PodVerdict(kind, message=f"could not pull image '{image}': {detail}")
        return PodVerdict(PodOutcome.CONFIG_ERROR, message=f"could not create container '{name}': {detail}")
    return None


def _pending(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    conditions: Mapping[str, Mapping[str, Any]],
    now: datetime,
    timeout_s: float,
) -> PodVerdict:
    """Pending: fine until the pending timeout, measured from creation (`startTime` is unset while
    the pod is unschedulable). A running checkout is progress, bounded by the pod's deadline."""
    created = _time((pod.get("metadata") or {}).get("creationTimestamp"))
    scheduled = (conditions.get("PodScheduled") or {}).get("status") == "True"
    started = any(
        (s.get("state") or {}).get("running") or (s.get("state") or {}).get("terminated")
        for s in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    )
    if started or created is None or (now - created).total_seconds() < timeout_s:
        return PodVerdict(PodOutcome.PENDING)
    messages = "; ".join(
        _flat(c.get("message"))
        for c in status.get("conditions") or []
        if c.get("status") != "True" and c.get("message")
    )
    what = "not scheduled" if not scheduled else "did not start"
    minutes = f"{timeout_s / 60:g}m" if timeout_s >= 60 else f"{timeout_s:g}s"
    return _infra(f"the stage's pod was {what} within {minutes}: {messages or 'no reason given'}")


def _since(
    pod: Mapping[str, Any], conditions: Mapping[str, Mapping[str, Any]], is_init: bool
) -> datetime | None:
    """When a container could start trying: init containers at pod start, the stage's once the
    init containers finished (its image is pulled only then)."""
    initialized = conditions.get("Initialized") or {}
    if not is_init and initialized.get("status") == "True":
        since = _time(initialized.get("lastTransitionTime"))
        if since is not None:
            return since
    status = pod.get("status") or {}
    return _time(status.get("startTime")) or _time((pod.get("metadata") or {}).get("creationTimestamp"))


def _container_status(statuses: Any, name: str) -> Mapping[str, Any] | None:
    for status in statuses or []:
        if status.get("name") == name:
            return dict(status)
    return None


def _memory_limit(pod: Mapping[str, Any], container: str) -> str:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return str(((spec.get("resources") or {}).get("limits") or {}).get("memory") or "")
    return ""


def _infra(message: str) -> PodVerdict:
    return PodVerdict(PodOutcome.INFRASTRUCTURE, message=message)


def _flat(text: Any) -> str:
    """One line, capped: API messages can span lines and run long."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + "…"


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
