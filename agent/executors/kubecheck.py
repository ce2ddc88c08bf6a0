"""Semantic checks of the Kubernetes manifests BuildIt builds: what the OpenAPI schema cannot say.

Why: the schema (checked in the tests with `kubernetes-validate`, strict) knows fields and types but
accepts `restartPolicy: Sometimes`, an uppercase name or `memory: lots`; the API server would reject
those (or worse, accept a pod that escapes its node). The agent runs these checks before it creates
anything, so a bad stage fails with a clear message instead of an API error, and the tests hold the
builder (`agent.executors.kubepod`) to them. Pure, standard library and `agent.contract` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from agent.contract.quantities import parse_cpu, parse_memory

__all__ = ["check_manifest"]

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_VALUE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_QUALIFIED_NAME: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
#: Environment variable names as Kubernetes before 1.30 accepts them (later ones accept more).
_ENV_NAME: Final = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*\Z")
_SECRET_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+\Z")
#: Capabilities Pod Security `baseline` lets a container add (its "allowed capabilities" list).
_BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_BASELINE_VOLUMES_FORBIDDEN: Final = ("hostPath",)
_TOLERATION_EFFECTS: Final = frozenset({"", "NoSchedule", "PreferNoSchedule", "NoExecute"})


def check_manifest(obj: Mapping[str, Any]) -> list[str]:
    """Problems with a Pod or Secret manifest, one readable line each (empty: none found).

    Why a list, not an exception: a test (and an operator reading the agent's log) sees every
    problem at once, and each check can be shown to fail on its own.
    """
    problems = _metadata(obj.get("metadata") or {})
    if obj.get("kind") == "Pod":
        problems += _pod_spec(obj.get("spec") or {})
    elif obj.get("kind") == "Secret":
        for key in obj.get("data") or {}:
            if not _SECRET_KEY.match(key):
                problems.append(f"secret key '{key}' may hold only letters, digits, '-', '_' and '.'")
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if not ref.get("uid") or not ref.get("name"):
                problems.append("an ownerReference needs the owner's name and uid")
    else:
        problems.append(f"kind '{obj.get('kind')}' is not one BuildIt builds (Pod, Secret)")
    return problems


def _metadata(metadata: Mapping[str, Any]) -> list[str]:
    problems = []
    name = str(metadata.get("name", ""))
    if len(name) > 63 or not _DNS_LABEL.match(name):
        problems.append(f"name '{name}' is not a DNS-1123 label (lowercase letters, digits, '-'; at most 63)")
    namespace = str(metadata.get("namespace", ""))
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        problems.append(f"namespace '{namespace}' is not a DNS-1123 label")
    for key, value in (metadata.get("labels") or {}).items():
        problems += _key_problems("label", key)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(
                f"label '{key}': value '{value}' is not a valid label value (at most 63 characters)"
            )
    for key, value in (metadata.get("annotations") or {}).items():
        problems += _key_problems("annotation", key)
        if not isinstance(value, str):
            problems.append(f"annotation '{key}': the value must be a string")
    return problems


def _key_problems(what: str, key: str) -> list[str]:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name of <= 63."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return [f"{what} key '{key}': prefix '{prefix}' is not a DNS subdomain"]
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return [f"{what} key '{key}': name '{name}' is not a qualified name (at most 63 characters)"]
    return []


def _pod_spec(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    if spec.get("restartPolicy") != "Never":
        problems.append(
            f"restartPolicy is '{spec.get('restartPolicy')}', must be 'Never' (one run per attempt)"
        )
    deadline = spec.get("activeDeadlineSeconds")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline < 1:
        problems.append(f"activeDeadlineSeconds is '{deadline}', must be a whole number of seconds >= 1")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field} is set: Pod Security 'baseline' forbids it")
    if spec.get("nodeName"):
        problems.append(
            "spec.nodeName is set: it bypasses the scheduler; pin with node affinity on metadata.name"
        )
    problems += _affinity(spec.get("affinity") or {})
    problems += _tolerations(spec.get("tolerations") or [])
    volumes = spec.get("volumes") or []
    volume_names = {volume.get("name") for volume in volumes}
    for volume in volumes:
        for forbidden in _BASELINE_VOLUMES_FORBIDDEN:
            if forbidden in volume:
                problems.append(
                    f"volume '{volume.get('name')}' is a {forbidden}: Pod Security 'baseline' forbids it"
                )
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    if not spec.get("containers"):
        problems.append("the pod has no containers")
    seen: set[str] = set()
    for container in containers:
        name = str(container.get("name", ""))
        if len(name) > 63 or not _DNS_LABEL.match(name):
            problems.append(f"container name '{name}' is not a DNS-1123 label")
        if name in seen:
            problems.append(f"container name '{name}' is used twice")
        seen.add(name)
        problems += [f"container '{name}': {p}" for p in _container(container, volume_names)]
    return problems


def _affinity(affinity: Mapping[str, Any]) -> list[str]:
    """Exactly one required term, matching one node by `metadata.name` (what DaemonSets use)."""
    required = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    wrong = "node affinity must be one required term: matchFields metadata.name In [<node>]"
    if len(terms) != 1:
        return [wrong]
    term = terms[0]
    fields = term.get("matchFields") or []
    if term.get("matchExpressions") or len(fields) != 1:
        return [wrong]
    match = fields[0]
    values = match.get("values") or []
    if match.get("key") != "metadata.name" or match.get("operator") != "In" or len(values) != 1:
        return [wrong]
    node = str(values[0])
    if len(node) > 253 or not _DNS_SUBDOMAIN.match(node):
        return [f"node name '{node}' is not a DNS subdomain"]
    return []


def _tolerations(tolerations: list[Mapping[str, Any]]) -> list[str]:
    problems = []
    for toleration in tolerations:
        operator = toleration.get("operator", "Equal")
        effect = toleration.get("effect", "")
        where = f"toleration {dict(toleration)}"
        if operator not in ("Equal", "Exists"):
            problems.append(f"{where}: operator must be Equal or Exists")
        if operator == "Exists" and toleration.get("value"):
            problems.append(f"{where}: operator Exists takes no value")
        if not toleration.get("key") and operator != "Exists":
            problems.append(f"{where}: an empty key needs operator Exists")
        if effect not in _TOLERATION_EFFECTS:
            problems.append(f"{where}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
        if "tolerationSeconds" in toleration and effect != "NoExecute":
            problems.append(f"{where}: tolerationSeconds applies to effect NoExecute only")
    return problems


def _container(container: Mapping[str, Any], volume_names: set[Any]) -> list[str]:
    problems = []
    if not container.get("image"):
        problems.append("no image")
    workdir = container.get("workingDir")
    if workdir is not None and not str(workdir).startswith("/"):
        problems.append(f"workingDir '{workdir}' must be absolute")
    names: set[str] = set()
    for variable in container.get("env") or []:
        name = str(variable.get("name", ""))
        if not _ENV_NAME.match(name):
            problems.append(f"environment variable name '{name}' is not valid")
        if name in names:
            problems.append(f"environment variable '{name}' is set twice")
        names.add(name)
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None and not _SECRET_KEY.match(str(ref.get("key", ""))):
            problems.append(f"environment variable '{name}': secret key '{ref.get('key')}' is not valid")
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volume_names:
            problems.append(f"mounts volume '{mount.get('name')}', which the pod does not have")
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    parsers = {"cpu": parse_cpu, "memory": parse_memory, "ephemeral-storage": parse_memory}
    parsed: dict[tuple[str, str], int] = {}
    for kind, amounts in (("requests", requests), ("limits", limits)):
        for resource, amount in amounts.items():
            parser = parsers.get(resource)
            value = parser(amount) if parser is not None else None
            if value is None:
                problems.append(f"{kind}.{resource} '{amount}' is not a {resource} quantity")
            else:
                parsed[(kind, resource)] = value
    for resource in parsers:
        request, limit = parsed.get(("requests", resource)), parsed.get(("limits", resource))
        if request is not None and limit is not None and request > limit:
            problems.append(f"requests.{resource} is above limits.{resource}")
    security = container.get("securityContext") or {}
    if security.get("privileged"):
        problems.append("privileged: Pod Security 'baseline' forbids it")
    added = set((security.get("capabilities") or {}).get("add") or [])
    if added - _BASELINE_CAPABILITIES:
        problems.append(
            f"adds capabilities {sorted(added - _BASELINE_CAPABILITIES)}: 'baseline' forbids them"
        )
    return problems
