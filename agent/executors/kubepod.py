"""The Pod (and its Secret) that runs one stage attempt on the agent's own Kubernetes node.

Pure: plain dicts shaped as the API server takes them (camelCase), no client import, so every
decision here is tested without a cluster (`kubernetes-validate` for the schema, `check_manifest`
for what the schema cannot say). The executor loop that creates, watches and deletes them is a
later part of the Kubernetes executor.

The shape, and why:

- One Pod per stage attempt, named `bi-<hash of the lease id>-<attempt>[-<stage>]`: the same lease
  and attempt always give the same name, so a create retried after a timeout meets `409
  AlreadyExists` and adopts the pod it already made instead of running the stage twice.
- Pinned to the agent's node by node affinity on `metadata.name` (what the DaemonSet controller
  itself does): the scheduler still places it (a full node leaves it Pending instead of failing it
  with `OutOfcpu`, as `spec.nodeName` would), and the node's name is not its hostname label.
- `restartPolicy: Never` (a stage runs once per attempt; retries are the controller's) and
  `activeDeadlineSeconds` = the stage timeout + `DEADLINE_GRACE_S`: the kubelet's backstop for a
  pod whose agent is gone. The grace covers the image pull and checkout, which count toward the
  pod's deadline (it starts with the pod), and lets the agent's own timer, which counts only the
  stage's running time, fire first with its precise message.
- Admissible under Pod Security Standard `baseline`: no host namespaces, hostPath, privileged or
  added capabilities. Stricter where it does not break builds: seccomp `RuntimeDefault`, no service
  account token, no service links, NET_RAW dropped (as GitLab's runner does). The stage container
  keeps its image's user and `allowPrivilegeEscalation` unset by default (`sudo` in CI images needs
  it; `PodSettings.allow_privilege_escalation=False` forbids it); `restricted` is not the target,
  since most build images run as root.
- The workspace is an emptyDir at /workspace; a `checkout` init container (BuildIt's helper image,
  the agent's command) fetches the exact commit into it. Its credentials live in a per-pod Secret
  mounted ONLY into that init container (only the `fetch.*` keys are projected); the stage's own
  secrets are keys of the same Secret, referenced by `secretKeyRef`, so no secret value is in the
  Pod object.
- The Secret is created first (without owner), then the Pod, then the Secret is patched with an
  ownerReference to the Pod (`owner_patch`), as GitLab's runner does: the Pod never starts against a
  missing Secret (which would read as `CreateContainerConfigError` and mount retries), and once
  owned the Secret is garbage-collected with the Pod. A crash between the two leaves a Secret that
  carries the pod's labels, so the agent's start-up reconcile finds and deletes it.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.contract.quantities import format_cpu, format_memory
from agent.contract.types import Resources, StageSpec
from agent.executors.kubecheck import check_manifest
from agent.executors.script import WORKSPACE_MOUNT, container_workdir, render_script

__all__ = [
    "DEADLINE_GRACE_S",
    "Checkout",
    "ManifestError",
    "PodSettings",
    "check_manifest",
    "label_value",
    "owner_patch",
    "pod_manifest",
    "pod_name",
    "secret_manifest",
]

DEADLINE_GRACE_S: Final = 120
STAGE_CONTAINER: Final = "stage"
CHECKOUT_CONTAINER: Final = "checkout"
CREDENTIALS_MOUNT: Final = "/var/run/buildit/credentials"
FETCH_KEY_PREFIX: Final = "fetch."
STAGE_KEY_PREFIX: Final = "stage."
LABEL_PREFIX: Final = "buildit.io/"

_LABEL_VALUE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_SECRET_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+\Z")


class ManifestError(ValueError):
    """A stage or setting cannot become a valid Pod; the message names what and how to fix it."""


@dataclass(frozen=True)
class PodSettings:
    """The agent's Kubernetes settings that shape every stage Pod (from its configuration)."""

    #: The node this agent (a DaemonSet pod) runs on: from the downward API's `spec.nodeName`.
    node_name: str
    namespace: str
    #: BuildIt's helper image, which runs the checkout init container.
    helper_image: str
    #: A service account without role bindings: its token is not mounted anyway.
    service_account: str = "buildit-stage"
    tolerations: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    #: The agent's `--stage-*` defaults for a stage that sets no resources of its own.
    defaults: Resources = field(default_factory=Resources)
    #: The workspace emptyDir's `sizeLimit` (a memory quantity such as "20Gi"); "" for none.
    workspace_size: str = ""
    termination_grace_s: int = 30
    priority_class: str = ""
    #: None leaves it to the image (a `sudo` in the build works); False forbids setuid gains.
    allow_privilege_escalation: bool | None = None
    deadline_grace_s: int = DEADLINE_GRACE_S


@dataclass(frozen=True)
class Checkout:
    """How the checkout init container fills the workspace: the agent's command (run with the
    workspace as its working directory) and the credentials it needs, mounted read-only at
    `CREDENTIALS_MOUNT` (one file per key) in that container only."""

    command: tuple[str, ...]
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)


def _short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _dns_part(text: str) -> str:
    """Lowercase letters, digits and single dashes; "" when nothing usable is left."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def pod_name(lease_id: str, attempt: int, stage: str) -> str:
    """The Pod's (and its Secret's) name: a DNS-1123 label of at most 63 characters.

    Why deterministic: a create retried after a timeout must find the pod the first try made.
    The lease id is hashed (not sanitized) so two leases can never share a name; the stage name
    is only there for people reading `kubectl get pods`, cut to what fits.
    """
    base = f"bi-{_short_hash(lease_id)}-{attempt}"
    room = 63 - len(base) - 1
    suffix = _dns_part(stage)[:room].strip("-") if room > 0 else ""
    return f"{base}-{suffix}" if suffix else base


def label_value(value: str) -> str:
    """`value` when Kubernetes accepts it as a label value, else a readable part plus its hash.

    Why a hash: a pipeline or node name can be longer than 63 characters or hold characters a
    label may not; the hash keeps two different values apart, the full value is in an annotation.
    """
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = _short_hash(value, 8)
    readable = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[: 63 - len(digest) - 1]
    readable = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", readable)
    return f"{readable}-{digest}" if readable else digest


def _labels(node: str, lease_id: str, attempt: int, pipeline: str, stage: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}managed": "true",
        f"{LABEL_PREFIX}node": label_value(node),
        f"{LABEL_PREFIX}lease": label_value(lease_id),
        f"{LABEL_PREFIX}attempt": str(attempt),
        f"{LABEL_PREFIX}pipeline": label_value(pipeline),
        f"{LABEL_PREFIX}stage": label_value(stage),
    }


def _resources(resources: Resources) -> dict[str, dict[str, str]]:
    """Requests equal to limits for CPU and memory (a stage gets what it may use, no overcommit).

    A stage's `pids` cannot be applied: Kubernetes has no per-pod or per-container process limit
    (the kubelet's `podPidsLimit` is node-wide configuration), so it is left to the cluster.
    """
    amounts: dict[str, str] = {}
    if resources.cpu_millis:
        amounts["cpu"] = format_cpu(resources.cpu_millis)
    if resources.memory_bytes:
        amounts["memory"] = format_memory(resources.memory_bytes)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _secret_key(name: str) -> str:
    key = STAGE_KEY_PREFIX + name
    if not _SECRET_KEY.match(key):
        raise ManifestError(
            f"secret '{name}' cannot be passed to a Kubernetes stage: its name may hold only letters, "
            "digits, '-', '_' and '.'; rename it in the pipeline's secrets"
        )
    return key


def _stage_env(spec: StageSpec, secret_name: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": name, "value": value} for name, value in spec.env.items() if name not in spec.secrets
    ]
    for name in spec.secrets:
        ref = {"name": secret_name, "key": _secret_key(name), "optional": False}
        env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _checkout_container(spec: StageSpec, checkout: Checkout, image: str) -> dict[str, Any]:
    if not checkout.command:
        raise ManifestError("the checkout needs a command (the agent's helper invocation)")
    env = [{"name": "BUILDIT_WORKSPACE", "value": WORKSPACE_MOUNT}]
    if spec.source is not None:
        env += [
            {"name": "BUILDIT_REPO_URL", "value": spec.source.repo_url},
            {"name": "BUILDIT_COMMIT", "value": spec.source.commit_sha},
            {"name": "BUILDIT_REF", "value": spec.source.ref},
        ]
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE_MOUNT}]
    if checkout.credentials:
        env.append({"name": "BUILDIT_CREDENTIALS", "value": CREDENTIALS_MOUNT})
        mounts.append({"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True})
    return {
        "name": CHECKOUT_CONTAINER,
        "image": image,
        "command": list(checkout.command),
        "workingDir": WORKSPACE_MOUNT,
        "env": env,
        "volumeMounts": mounts,
        # Small requests so the pod's scheduling cost is the stage's; memory capped for a big clone.
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def pod_manifest(
    spec: StageSpec,
    *,
    lease_id: str,
    attempt: int,
    pipeline: str,
    settings: PodSettings,
    checkout: Checkout | None = None,
) -> dict[str, Any]:
    """The Pod for one attempt of `spec` under `lease_id`, as the API server takes it.

    Why one function: every field is a decision documented in this module's docstring, and the
    result is checked whole (`check_manifest`, schema validation). Raises `ManifestError` for a
    stage Kubernetes cannot run as written (no image, a workdir outside the workspace, a secret
    name a Secret key cannot hold). `checkout` None: the stage starts in an empty workspace.
    """
    if not spec.image:
        raise ManifestError(f"stage '{spec.name}' names no image: the Kubernetes executor runs images only")
    try:
        workdir = container_workdir(spec.workdir)
    except ValueError as exc:
        raise ManifestError(f"stage '{spec.name}': {exc}") from None
    name = pod_name(lease_id, attempt, spec.name)
    workspace: dict[str, Any] = {"emptyDir": {"sizeLimit": settings.workspace_size}}
    if not settings.workspace_size:
        workspace = {"emptyDir": {}}
    volumes: list[dict[str, Any]] = [{"name": "workspace", **workspace}]
    stage_security: dict[str, Any] = {"capabilities": {"drop": ["NET_RAW"]}}
    if settings.allow_privilege_escalation is not None:
        stage_security["allowPrivilegeEscalation"] = settings.allow_privilege_escalation
    stage: dict[str, Any] = {
        "name": STAGE_CONTAINER,
        "image": spec.image,
        "command": ["/bin/sh", "-c", render_script(spec.commands, stdin_watcher=False)],
        "workingDir": workdir,
        "env": _stage_env(spec, name),
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE_MOUNT}],
        "securityContext": stage_security,
    }
    resources = _resources(spec.resources.over(settings.defaults))
    if resources:
        stage["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": max(1, math.ceil(spec.timeout_s)) + settings.deadline_grace_s,
        "terminationGracePeriodSeconds": settings.termination_grace_s,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "serviceAccountName": settings.service_account,
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [settings.node_name]}
                            ]
                        }
                    ]
                }
            }
        },
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": volumes,
        "containers": [stage],
    }
    if checkout is not None:
        pod_spec["initContainers"] = [_checkout_container(spec, checkout, settings.helper_image)]
        if checkout.credentials:
            items = [{"key": FETCH_KEY_PREFIX + key, "path": key} for key in sorted(checkout.credentials)]
            volumes.append({"name": "credentials", "secret": {"secretName": name, "items": items}})
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.priority_class:
        pod_spec["priorityClassName"] = settings.priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": _labels(settings.node_name, lease_id, attempt, pipeline, spec.name),
            "annotations": {
                f"{LABEL_PREFIX}pipeline-name": pipeline,
                f"{LABEL_PREFIX}stage-name": spec.name,
                # A build in progress must not be moved by the cluster autoscaler's scale-down.
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
            },
        },
        "spec": pod_spec,
    }


def secret_manifest(
    pod: Mapping[str, Any], spec: StageSpec, checkout: Checkout | None = None
) -> dict[str, Any]:
    """The per-pod Secret: the stage's secrets (`stage.<NAME>`) and the checkout's credentials
    (`fetch.<key>`), with the pod's name, namespace and labels.

    Created before the Pod, without an owner (see the module docstring); `owner_patch` then ties it
    to the Pod. Immutable: nothing changes its data, and the kubelet need not watch it.
    """
    credentials = checkout.credentials if checkout is not None else {}
    data = {_secret_key(name): value for name, value in spec.secrets.items()}
    for key, value in credentials.items():
        if not _SECRET_KEY.match(key):
            raise ManifestError(
                f"checkout credential '{key}': a key may hold only letters, digits, '-', '_', '.'"
            )
        data[FETCH_KEY_PREFIX + key] = value
    metadata = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": dict(metadata["labels"]),
        },
        "type": "Opaque",
        "immutable": True,
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())},
    }


def owner_patch(pod_name: str, pod_uid: str) -> dict[str, Any]:
    """The merge patch that makes the Secret owned by its Pod (deleted with it by the garbage
    collector). `blockOwnerDeletion` stays false: pods are deleted with Background propagation, and
    true would need `pods/finalizers` update rights where OwnerReferencesPermissionEnforcement is on.
    """
    reference = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod_name,
        "uid": pod_uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }
    return {"metadata": {"ownerReferences": [reference]}}
