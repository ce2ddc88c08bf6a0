"""Pod status documents transcribed from real reports, for agent.executors.kubestatus.

Each is what `GET /api/v1/namespaces/{ns}/pods/{name}` returns (camelCase), cut to the fields the
classifier reads. The state, reasons, exit codes and messages come from the cited report (its YAML,
JSON or `kubectl describe`, which prints the same fields); names, times and images were changed to a
BuildIt stage pod's, and `spec` carries the stage container's limits where the verdict quotes them.
Where a report shows only some fields, the comment says which ones were filled in and from where.
"""

from __future__ import annotations

from typing import Any

CREATED = "2026-05-29T07:10:00Z"
STARTED = "2026-05-29T07:10:02Z"
INITIALIZED = "2026-05-29T07:10:20Z"


def pod(
    status: dict[str, Any],
    *,
    memory_limit: str = "",
    deletion: str | None = None,
    deadline: int = 720,
) -> dict[str, Any]:
    """A stage pod (named as kubepod names them) with `status`."""
    limits = {"memory": memory_limit} if memory_limit else {}
    metadata: dict[str, Any] = {
        "name": "bi-0f3c2a9b1d-1-test",
        "namespace": "buildit-stages",
        "creationTimestamp": CREATED,
    }
    if deletion:
        metadata["deletionTimestamp"] = deletion
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "activeDeadlineSeconds": deadline,
            "restartPolicy": "Never",
            "containers": [{"name": "stage", "image": "python:3.12", "resources": {"limits": limits}}],
        },
        "status": status,
    }


def stage_status(state: dict[str, Any], image: str = "python:3.12") -> list[dict[str, Any]]:
    return [{"name": "stage", "image": image, "ready": False, "restartCount": 0, "state": state}]


def scheduled(initialized: bool = True) -> list[dict[str, Any]]:
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED},
        {
            "type": "Initialized",
            "status": "True" if initialized else "False",
            "lastTransitionTime": INITIALIZED if initialized else STARTED,
        },
    ]


# openshift/origin#7064 ("the pod container status ... shows the Reason as `OOMKilled` and `ExitCode`
# is 137") and the CRI conformance expectation quoted in pelagos-containers/pelagos#343.
OOM_KILLED_137 = pod(
    {
        "phase": "Failed",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status(
            {
                "terminated": {
                    "exitCode": 137,
                    "reason": "OOMKilled",
                    "startedAt": STARTED,
                    "finishedAt": INITIALIZED,
                }
            }
        ),
    },
    memory_limit="4Gi",
)

# kubernetes/kubernetes#131530: "State: Terminated, Reason: OOMKilled, Exit Code: 0" and
# "phase: Succeeded", a pod with one init container and one main container (as a stage pod is).
OOM_KILLED_EXIT_0 = pod(
    {
        "phase": "Succeeded",
        "startTime": STARTED,
        "conditions": scheduled(),
        "initContainerStatuses": [
            {"name": "checkout", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ],
        "containerStatuses": stage_status({"terminated": {"exitCode": 0, "reason": "OOMKilled"}}),
    },
    memory_limit="4Gi",
)

# kubernetes/kubernetes#122160 (GKE 1.28, a single-container pod past its ephemeral-storage limit):
# "Reason: ContainerStatusUnknown, Message: The container could not be located when the pod was
# terminated, Exit Code: 137", startedAt/finishedAt null. Phase Failed as the report's pod shows it.
CONTAINER_STATUS_UNKNOWN = pod(
    {
        "phase": "Failed",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status(
            {
                "terminated": {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was terminated",
                    "startedAt": None,
                    "finishedAt": None,
                }
            }
        ),
    }
)

# operate-first/apps#1352: an evicted pod's whole status, verbatim in its fields:
# phase Failed, reason Evicted, message "The node was low on resource: ephemeral-storage. ...", no
# container statuses at all.
EVICTED = pod(
    {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: ephemeral-storage. Container sparkoperator was using "
        "31748Ki, which exceeds its request of 0. ",
        "startTime": STARTED,
    }
)

# kubernetes/kubernetes#105467 (2025 comment): no `status.reason`, a DisruptionTarget condition with
# reason TerminationByKubelet and the eviction message. The container state is filled in from
# kubernetes/kubernetes#141483: a main container that handles SIGTERM exits 0 and the pod reads as
# completed, so the condition is the only sign it was evicted.
DISRUPTION_TARGET = pod(
    {
        "phase": "Succeeded",
        "startTime": STARTED,
        "conditions": [
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "lastTransitionTime": "2026-05-29T07:30:02Z",
                "message": "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, "
                "available: 898240Ki. Container discovery was using 4Ki, request is 0, has larger "
                "consumption of ephemeral-storage. ",
            },
            {"type": "Ready", "status": "False", "reason": "PodCompleted"},
            *scheduled(),
        ],
        "containerStatuses": stage_status({"terminated": {"exitCode": 0, "reason": "Completed"}}),
    }
)

# red-hat-storage/ocs-ci#12362: "Status: Failed, Reason: OutOfcpu, Message: Pod was rejected: Node
# didn't have enough resource: cpu, requested: 150, used: 11388, capacity: 11500"; the container
# never got an ID (waiting, no terminated state).
OUT_OF_CPU = pod(
    {
        "phase": "Failed",
        "reason": "OutOfcpu",
        "message": "Pod was rejected: Node didn't have enough resource: cpu, requested: 150, used: 11388, "
        "capacity: 11500",
        "containerStatuses": stage_status({"waiting": {}}),
    }
)


def image_pull_back_off() -> dict[str, Any]:
    """sagar-jadhav/helm-chart-hooks-example#1: `message: Back-off pulling image "..."`; phase Pending
    while it lasts (kubernetes/kubernetes#96187)."""
    return pod(
        {
            "phase": "Pending",
            "startTime": STARTED,
            "conditions": scheduled(),
            "containerStatuses": stage_status(
                {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "tusenka/post-install-db-init:1.0.0"',
                    }
                },
                image="tusenka/post-install-db-init:1.0.0",
            ),
        }
    )


# Shopify/krane#124: before the back-off, the container status message "references the specific
# reason the image could not be pulled" (image not found); phase Pending (kubernetes/kubernetes#96187).
# The message's wording is containerd's for a missing tag.
ERR_IMAGE_PULL_NOT_FOUND = pod(
    {
        "phase": "Pending",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status(
            {
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": "rpc error: code = NotFound desc = failed to pull and unpack image "
                    '"docker.io/library/python:3.99": failed to resolve reference '
                    '"docker.io/library/python:3.99": docker.io/library/python:3.99: not found',
                }
            },
            image="python:3.99",
        ),
    }
)

# FootprintAI/Containarium#1524: kubelet "Failed to apply default image tag "images:ubuntu/24.04":
# couldn't parse image name "images:ubuntu/24.04": invalid reference format" / "Error:
# InvalidImageName"; ressu/kube-plex#11 shows the state ("State: Waiting, Reason: InvalidImageName")
# with phase Pending.
INVALID_IMAGE_NAME = pod(
    {
        "phase": "Pending",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status(
            {
                "waiting": {
                    "reason": "InvalidImageName",
                    "message": 'Failed to apply default image tag "images:ubuntu/24.04": '
                    'couldn\'t parse image name "images:ubuntu/24.04": invalid reference format',
                }
            },
            image="images:ubuntu/24.04",
        ),
    }
)

# tektoncd/pipeline#1902: `"state": {"waiting": {"message": "secret \"github-secrets\" not found",
# "reason": "CreateContainerConfigError"}}`, the pod Pending.
CREATE_CONTAINER_CONFIG_ERROR = pod(
    {
        "phase": "Pending",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status(
            {
                "waiting": {
                    "message": 'secret "github-secrets" not found',
                    "reason": "CreateContainerConfigError",
                }
            }
        ),
    }
)

# argoproj/argo-workflows#6135 (pod status: phase Failed, message "Pod was active on the node longer
# than the specified deadline") with reason DeadlineExceeded as kubernetes/kubernetes#88613 reports
# it, whose container "remains Running" in the status.
DEADLINE_EXCEEDED = pod(
    {
        "phase": "Failed",
        "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status({"running": {"startedAt": INITIALIZED}}),
    }
)

# Woodpecker's kubernetes backend (pipeline/backend/kubernetes, WaitStep) re-reads the pod because
# "phase=Succeeded before state.terminated is set" (research notes §5): the phase has flipped, the
# container status still shows it running.
SUCCEEDED_BEFORE_TERMINATED = pod(
    {
        "phase": "Succeeded",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status({"running": {"startedAt": INITIALIZED}}),
    }
)

# determined-ai/determined#5507 (`kubectl delete pod` while it runs: no exit code can be had): a
# running pod with `deletionTimestamp` set, as the API shows a pod in its grace period.
DELETED_MID_RUN = pod(
    {
        "phase": "Running",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status({"running": {"startedAt": INITIALIZED}}),
    },
    deletion="2026-05-29T07:20:00Z",
)

# kubernetes/kubernetes#49896 (2019 comment, v1.12): `conditions: [{message: '0/10 nodes are
# available: 10 node(s) didn''t match node selector, 4 Insufficient cpu.', reason: Unschedulable,
# status: "False", type: PodScheduled}]`, `phase: Pending`, no startTime.
UNSCHEDULABLE = {
    **pod({}),
    "status": {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "lastProbeTime": "2019-06-15T10:53:58Z",
                "lastTransitionTime": "2019-06-15T10:44:23Z",
                "message": "0/10 nodes are available: 10 node(s) didn't match node selector, "
                "4 Insufficient cpu.",
            }
        ],
    },
}

RUNNING = pod(
    {
        "phase": "Running",
        "startTime": STARTED,
        "conditions": scheduled(),
        "containerStatuses": stage_status({"running": {"startedAt": INITIALIZED}}),
    }
)
