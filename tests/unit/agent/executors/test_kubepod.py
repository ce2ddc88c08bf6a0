"""agent.executors.kubepod and kubecheck: the stage Pod and its Secret, checked three ways.

1. What the manifest says (the decisions in kubepod's docstring, asserted field by field).
2. Strict schema validation with `kubernetes-validate` for several Kubernetes minors (unknown or
   misspelt fields and wrong types fail), and a round trip through the real client's model.
3. `check_manifest`, the semantic checks the schema cannot make: the builder's output passes them,
   and each check is shown to fail on a manifest broken on purpose.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, V1Pod, V1Secret

from agent.contract.types import Resources, StageSpec, WorkspaceSource
from agent.executors.kubecheck import check_manifest
from agent.executors.kubepod import (
    CREDENTIALS_MOUNT,
    Checkout,
    ManifestError,
    PodSettings,
    label_value,
    owner_patch,
    pod_manifest,
    pod_name,
    secret_manifest,
)
from agent.executors.script import render_script

VERSIONS = ("1.29", "1.31", "1.33", "1.35", "1.37")
LEASE = "3f0c9a52-9d7e-4d0e-b8b1-6f0d2f1f2a10"
SETTINGS = PodSettings(
    node_name="ip-10-0-1-17.eu-west-1.compute.internal",
    namespace="buildit-stages",
    helper_image="ghcr.io/example/buildit-helper:0.1.0",
    tolerations=({"key": "ci", "operator": "Equal", "value": "true", "effect": "NoSchedule"},),
    node_selector={"kubernetes.io/arch": "amd64"},
    defaults=Resources(cpu_millis=1000, memory_bytes=2 * 2**30),
    workspace_size="20Gi",
)
CHECKOUT = Checkout(
    command=("buildit-helper", "checkout"),
    credentials={"mirror-token": "tok-s3cr3t-mirror"},
)


def stage(**changes: Any) -> StageSpec:
    fields: dict[str, Any] = {
        "name": "Unit Tests (py3.12)",
        "index": 1,
        "commands": ("pip install -e .", "pytest -q"),
        "image": "python:3.12",
        "env": {"CI": "true", "TOKEN": "shadowed by the secret"},
        "secrets": {"TOKEN": "s3cr3t-value"},
        "timeout_s": 599.2,
        "workdir": "src/app",
        "source": WorkspaceSource("https://git.example/app.git", "a" * 40, "refs/heads/main"),
        "resources": Resources(memory_bytes=4 * 2**30),
    }
    fields.update(changes)
    return StageSpec(**fields)


def build(spec: StageSpec | None = None, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "lease_id": LEASE,
        "attempt": 2,
        "pipeline": "my-app",
        "settings": SETTINGS,
        "checkout": CHECKOUT,
    }
    options.update(kwargs)
    return pod_manifest(spec or stage(), **options)


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    return next(c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name)


# --------------------------------------------------------------------------- what the manifest says


def test_the_name_is_deterministic_a_dns_label_and_differs_per_lease_and_attempt() -> None:
    name = pod_name(LEASE, 2, "Unit Tests (py3.12)")
    assert name == pod_name(LEASE, 2, "Unit Tests (py3.12)")
    assert name.startswith("bi-") and name.endswith("-2-unit-tests-py3-12")
    assert pod_name(LEASE, 3, "Unit Tests (py3.12)") != name
    assert pod_name(LEASE + "x", 2, "Unit Tests (py3.12)") != name
    long = pod_name(LEASE, 12345, "a" * 200 + "!")
    assert len(long) <= 63 and not long.endswith("-")
    assert pod_name(LEASE, 1, "!!!") == f"bi-{long.split('-')[1]}-1"  # nothing usable: no suffix


def test_labels_identify_the_attempt_and_are_valid_values_even_for_long_or_odd_inputs() -> None:
    pod = build(stage(name="Ünïcode stage / with spaces"), pipeline="x" * 80)
    labels = pod["metadata"]["labels"]
    assert labels["buildit.io/managed"] == "true"
    assert labels["buildit.io/lease"] == LEASE
    assert labels["buildit.io/attempt"] == "2"
    assert labels["buildit.io/node"] == SETTINGS.node_name  # a valid value is kept as it is
    long_node = "node-" + "n" * 70 + ".example.internal"  # a node name may be a 253-character DNS name
    assert len(label_value(long_node)) <= 63 and label_value(long_node).startswith("node-nnn")
    assert len(labels["buildit.io/pipeline"]) <= 63
    assert label_value("x" * 80) != label_value("x" * 81)  # the hash keeps them apart
    assert label_value("my-app") == "my-app"
    # The full names stay readable in annotations.
    assert pod["metadata"]["annotations"]["buildit.io/pipeline-name"] == "x" * 80
    assert pod["metadata"]["annotations"]["buildit.io/stage-name"] == "Ünïcode stage / with spaces"
    assert check_manifest(pod) == []


def test_the_pod_is_pinned_to_the_agents_node_by_affinity_on_metadata_name() -> None:
    spec = build()["spec"]
    assert "nodeName" not in spec
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [SETTINGS.node_name]}]}
    ]
    assert spec["tolerations"] == [dict(SETTINGS.tolerations[0])]
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_pod_level_settings_run_once_with_a_deadline_and_no_api_access() -> None:
    spec = build()["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 600 + 120  # ceil(599.2) + the documented grace
    assert build(stage(timeout_s=0.01))["spec"]["activeDeadlineSeconds"] == 1 + 120
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == "buildit-stage"
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["volumes"][0] == {"name": "workspace", "emptyDir": {"sizeLimit": "20Gi"}}


def test_the_stage_container_runs_the_shared_script_in_its_workdir_with_limits() -> None:
    pod = build()
    main = container(pod, "stage")
    spec = stage()
    assert main["image"] == "python:3.12"
    assert main["command"] == ["/bin/sh", "-c", render_script(spec.commands, stdin_watcher=False)]
    assert main["workingDir"] == "/workspace/src/app"
    # The stage's memory, the agent's default CPU; requests equal limits.
    assert main["resources"] == {
        "requests": {"cpu": "1", "memory": "4Gi"},
        "limits": {"cpu": "1", "memory": "4Gi"},
    }
    assert main["securityContext"] == {"capabilities": {"drop": ["NET_RAW"]}}
    assert main["volumeMounts"] == [{"name": "workspace", "mountPath": "/workspace"}]
    no_resources = replace_settings(defaults=Resources())
    assert "resources" not in container(build(stage(resources=Resources()), settings=no_resources), "stage")


def replace_settings(**changes: Any) -> PodSettings:
    fields = {name: getattr(SETTINGS, name) for name in SETTINGS.__dataclass_fields__}
    fields.update(changes)
    return PodSettings(**fields)


def test_secrets_are_references_to_the_per_pod_secret_never_values_in_the_pod() -> None:
    pod = build()
    env = container(pod, "stage")["env"]
    assert env == [
        {"name": "CI", "value": "true"},
        # TOKEN is a secret too: the plain env entry of the same name is dropped (the secret wins).
        {
            "name": "TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": pod["metadata"]["name"], "key": "stage.TOKEN", "optional": False}
            },
        },
    ]
    text = repr(pod)
    assert "s3cr3t-value" not in text and "tok-s3cr3t-mirror" not in text


def test_only_the_checkout_init_container_mounts_the_credentials() -> None:
    pod = build()
    init = container(pod, "checkout")
    assert init["image"] == SETTINGS.helper_image
    assert init["command"] == ["buildit-helper", "checkout"]
    assert {"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True} in init["volumeMounts"]
    assert {"name": "BUILDIT_COMMIT", "value": "a" * 40} in init["env"]
    assert init["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert all(m["name"] != "credentials" for m in container(pod, "stage")["volumeMounts"])
    # Only the checkout's keys are projected into the volume, not the stage's secrets.
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "credentials")
    assert volume["secret"] == {
        "secretName": pod["metadata"]["name"],
        "items": [{"key": "fetch.mirror-token", "path": "mirror-token"}],
    }
    bare = build(checkout=None)
    assert "initContainers" not in bare["spec"] and len(bare["spec"]["volumes"]) == 1


def test_the_secret_holds_both_kinds_of_key_and_is_tied_to_the_pod_by_a_patch() -> None:
    pod = build()
    secret = secret_manifest(pod, stage(), CHECKOUT)
    assert secret["metadata"] == {
        "name": pod["metadata"]["name"],
        "namespace": "buildit-stages",
        "labels": pod["metadata"]["labels"],
    }
    assert secret["immutable"] is True
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == {"fetch.mirror-token": "tok-s3cr3t-mirror", "stage.TOKEN": "s3cr3t-value"}
    patch = owner_patch(pod["metadata"]["name"], "6a1b1ea0-0000-4000-8000-000000000001")
    assert patch["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod["metadata"]["name"],
            "uid": "6a1b1ea0-0000-4000-8000-000000000001",
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    assert check_manifest(secret) == []
    owned = copy.deepcopy(secret)
    owned["metadata"].update(patch["metadata"])
    assert check_manifest(owned) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"image": None}, "names no image"),
        ({"workdir": "../elsewhere"}, "points outside the workspace"),
        ({"workdir": "/etc"}, "must be relative to the workspace"),
        ({"secrets": {"BAD NAME": "x"}}, "may hold only letters"),
    ],
    ids=["no-image", "workdir-escapes", "workdir-absolute", "secret-name"],
)
def test_a_stage_kubernetes_cannot_run_is_refused_with_a_clear_message(
    change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ManifestError, match=expected):
        build(stage(**change))


def test_an_empty_checkout_command_is_refused() -> None:
    with pytest.raises(ManifestError, match="needs a command"):
        build(checkout=Checkout(command=()))


def test_privilege_escalation_can_be_forbidden_for_the_stage_container() -> None:
    pod = build(settings=replace_settings(allow_privilege_escalation=False, priority_class="buildit"))
    assert container(pod, "stage")["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["priorityClassName"] == "buildit"


# --------------------------------------------------------------------------- schema and client


def manifests() -> list[dict[str, Any]]:
    pod = build()
    secret = secret_manifest(pod, stage(), CHECKOUT)
    secret["metadata"].update(
        owner_patch(pod["metadata"]["name"], "6a1b1ea0-0000-4000-8000-000000000001")["metadata"]
    )
    minimal = build(
        stage(secrets={}, env={}, resources=Resources()), checkout=None, settings=PodSettings("n", "ns", "h")
    )
    return [pod, secret, minimal]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_manifests_pass_strict_schema_validation(version: str) -> None:
    for manifest in manifests():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_strict_schema_validation_catches_a_misspelt_field() -> None:
    pod = build()
    container(pod, "stage")["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, VERSIONS[-1], strict=True)


def test_the_manifests_round_trip_through_the_kubernetes_client_models() -> None:
    client = ApiClient()
    pod, secret, _ = manifests()
    assert client.sanitize_for_serialization(V1Pod.from_dict(pod)) == pod
    assert client.sanitize_for_serialization(V1Secret.from_dict(secret)) == secret


def test_the_stage_script_runs_the_commands_without_stdin() -> None:
    # The pod's script, run by a real shell with stdin closed (as a pod's container has it).
    script = render_script(("echo one", "exit 3", "echo never"), stdin_watcher=False)
    done = subprocess.run(
        ["/bin/sh", "-c", script], stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    assert done.returncode == 3
    assert done.stdout == b"\x1e\x1f1\none\n\x1e\x1f2\n"


# --------------------------------------------------------------------------- semantic checks


def test_the_built_manifests_pass_the_semantic_checks() -> None:
    for manifest in manifests():
        assert check_manifest(manifest) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets the field at `path` (keys and list indexes joined by ">")."""

    def change(pod: dict[str, Any]) -> None:
        *parents, last = path.split(">")
        node: Any = pod
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("name-uppercase", _set("metadata>name", "Bi-Stage"), "name 'Bi-Stage' is not a DNS-1123 label"),
    ("name-too-long", _set("metadata>name", "b" * 64), "is not a DNS-1123 label"),
    ("namespace", _set("metadata>namespace", "Build_Stages"), "namespace 'Build_Stages'"),
    (
        "label-value",
        _set("metadata>labels>buildit.io/stage", "has space"),
        "value 'has space' is not a valid",
    ),
    ("label-value-long", _set("metadata>labels>buildit.io/stage", "v" * 64), "is not a valid label value"),
    ("label-key", _set("metadata>labels>Bad_Prefix/x", "y"), "prefix 'Bad_Prefix' is not a DNS subdomain"),
    ("annotation-key", _set("metadata>annotations>-bad", "y"), "annotation key '-bad'"),
    ("restart-policy", _set("spec>restartPolicy", "Sometimes"), "restartPolicy is 'Sometimes'"),
    ("deadline", _set("spec>activeDeadlineSeconds", 0), "activeDeadlineSeconds is '0'"),
    ("node-name", _set("spec>nodeName", "node-1"), "spec.nodeName is set"),
    ("host-network", _set("spec>hostNetwork", True), "hostNetwork is set"),
    (
        "affinity-hostname",
        _set(
            "spec>affinity>nodeAffinity>requiredDuringSchedulingIgnoredDuringExecution>nodeSelectorTerms",
            [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n"]}]}],
        ),
        "node affinity must be one required term",
    ),
    (
        "affinity-two-nodes",
        _set(
            "spec>affinity>nodeAffinity>requiredDuringSchedulingIgnoredDuringExecution>nodeSelectorTerms",
            [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}],
        ),
        "node affinity must be one required term",
    ),
    ("affinity-missing", _set("spec>affinity", {}), "node affinity must be one required term"),
    (
        "toleration",
        _set("spec>tolerations", [{"key": "ci", "operator": "Exists", "value": "x", "tolerationSeconds": 5}]),
        "operator Exists takes no value",
    ),
    ("host-path", _set("spec>volumes>0", {"name": "workspace", "hostPath": {"path": "/"}}), "is a hostPath"),
    (
        "cpu-quantity",
        _set("spec>containers>0>resources>limits>cpu", "lots"),
        "limits.cpu 'lots' is not a cpu",
    ),
    (
        "memory-quantity",
        _set("spec>containers>0>resources>requests>memory", "4GB"),
        "is not a memory quantity",
    ),
    (
        "request-over-limit",
        _set("spec>containers>0>resources>requests>memory", "8Gi"),
        "requests.memory is above",
    ),
    ("privileged", _set("spec>containers>0>securityContext>privileged", True), "privileged"),
    ("capability", _set("spec>containers>0>securityContext>capabilities>add", ["SYS_ADMIN"]), "SYS_ADMIN"),
    ("env-name", _set("spec>containers>0>env>0>name", "1BAD=NAME"), "'1BAD=NAME' is not valid"),
    ("env-twice", _set("spec>containers>0>env>0>name", "TOKEN"), "'TOKEN' is set twice"),
    ("workdir", _set("spec>containers>0>workingDir", "src"), "workingDir 'src' must be absolute"),
    ("mount", _set("spec>containers>0>volumeMounts>0>name", "cache"), "mounts volume 'cache'"),
    ("container-name", _set("spec>containers>0>name", "checkout"), "container name 'checkout' is used twice"),
    ("no-image", _set("spec>containers>0>image", ""), "no image"),
]


@pytest.mark.parametrize(
    ("breakage", "expected"), [(b, e) for _, b, e in BROKEN], ids=[i for i, _, _ in BROKEN]
)
def test_each_semantic_check_fails_on_a_manifest_broken_on_purpose(
    breakage: Callable[[dict[str, Any]], None], expected: str
) -> None:
    pod = build()
    breakage(pod)
    problems = check_manifest(pod)
    assert any(expected in problem for problem in problems), problems


def test_a_bad_secret_and_an_unknown_kind_are_reported() -> None:
    secret = secret_manifest(build(), stage(), CHECKOUT)
    secret["data"]["bad key"] = ""
    secret["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "x", "uid": ""}]
    problems = check_manifest(secret)
    assert any("secret key 'bad key'" in p for p in problems)
    assert any("owner's name and uid" in p for p in problems)
    assert check_manifest({"kind": "Deployment", "metadata": {"name": "a", "namespace": "b"}}) == [
        "kind 'Deployment' is not one BuildIt builds (Pod, Secret)"
    ]
