"""The chart's templates, read as text (no helm binary here, see chart_files): their Go-template
syntax is balanced, they call only helpers that exist, use only values that exist, and their
literal YAML says what the chart promises: the agent's Role has the executor's verbs and nothing
that opens a stream into a pod, stage pods get an identity without a token, the agent knows its
node from the downward API, the controller is probed on its real health endpoints, and every
BUILDIT_* variable the chart sets is one the README's configuration table documents."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.unit.charts.chart_files import (
    CHART,
    PLACEHOLDER,
    ROOT,
    actions,
    code,
    manifest_names,
    one,
    skeleton,
    template_names,
    text,
    values,
)

_OPENERS = re.compile(r"^-?\s*(if|with|range|define|block)\b")
_END = re.compile(r"^-?\s*end\s*-?$")


@pytest.mark.parametrize("name", template_names())
def test_actions_are_balanced(name: str) -> None:
    source = text(name)
    assert source.count("{{") == source.count("}}"), f"{name}: unbalanced {{{{ }}}}"
    depth = 0
    for action in actions(source):
        if _OPENERS.match(action):
            depth += 1
        elif _END.match(action):
            depth -= 1
            assert depth >= 0, f"{name}: an {{{{ end }}}} closes nothing"
    assert depth == 0, f"{name}: {depth} block(s) not closed by {{{{ end }}}}"


def _defined_helpers() -> set[str]:
    return set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', text("_helpers.tpl")))


def test_only_defined_helpers_are_included_and_each_defined_one_is_used() -> None:
    defined = _defined_helpers()
    used: set[str] = set()
    for name in template_names():
        used |= set(re.findall(r'include\s+"([^"]+)"', text(name)))
    assert used - defined == set(), "included but not defined"
    assert defined - used == set(), "defined but never included"


def _leaf_paths(node: Any, prefix: str = "") -> set[str]:
    """Every path of values.yaml a template may read: maps are walked, the rest are leaves."""
    paths = {prefix} if prefix else set()
    if isinstance(node, dict):
        for key, value in node.items():
            paths |= _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
    return paths


def _used_value_paths() -> set[str]:
    used: set[str] = set()
    for name in template_names():
        used |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text(name)))
    return {path.rstrip(".") for path in used}


def test_templates_read_only_values_that_exist() -> None:
    assert _used_value_paths() - _leaf_paths(values()) == set()


def test_every_value_is_read_by_some_template() -> None:
    """A value no template reads would be a setting that does nothing."""
    used = _used_value_paths()
    unread = {
        path
        for path in _leaf_paths(values())
        if not any(path == u or path.startswith(u + ".") or u.startswith(path + ".") for u in used)
    }
    assert unread == set()


@pytest.mark.parametrize("name", manifest_names())
def test_the_literal_yaml_of_each_manifest_parses(name: str) -> None:
    docs = skeleton(name)
    assert docs, f"{name}: no document"
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"], f"{name}: a document without apiVersion/kind"
        assert doc["metadata"]["name"].startswith(PLACEHOLDER), f"{name}: names come from the helpers"


def _all_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for name in manifest_names():
        for doc in skeleton(name):
            if doc["kind"] in ("Role", "ClusterRole"):
                rules.extend(doc["rules"])
    return rules


def test_the_agent_role_has_exactly_the_executors_verbs() -> None:
    role = one("agent-rbac.yaml", "Role")
    granted = {(r["resources"][0], verb) for r in role["rules"] for verb in r["verbs"]}
    assert all(r["apiGroups"] == [""] and len(r["resources"]) == 1 for r in role["rules"])
    assert granted == {
        *(("pods", v) for v in ("create", "get", "list", "watch", "delete", "patch")),
        ("pods/log", "get"),
        ("events", "list"),
        ("events", "watch"),
        *(("secrets", v) for v in ("create", "delete", "patch", "get")),
    }


def test_no_role_grants_exec_attach_or_wildcards() -> None:
    for rule in _all_rules():
        for resource in rule["resources"]:
            assert resource not in ("pods/exec", "pods/attach", "pods/portforward", "*")
        assert "*" not in rule["verbs"]
        assert "*" not in rule["apiGroups"]
    for name in manifest_names():
        assert "pods/exec" not in code(name)
        assert "pods/attach" not in code(name)
        assert "ClusterRole" not in code(name), f"{name}: the chart asks for no cluster-wide rights"


def test_the_role_binding_binds_the_agent_service_account_to_the_role() -> None:
    binding = one("agent-rbac.yaml", "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": PLACEHOLDER,
    }
    [subject] = binding["subjects"]
    assert subject["kind"] == "ServiceAccount"
    source = text("agent-rbac.yaml")
    # The ServiceAccount, the Role, the RoleBinding, its roleRef and its subject all name the agent;
    # the ServiceAccount lives in the release namespace, the Role and the binding in the stage one.
    assert source.count('name: {{ include "buildit.agentName" . }}') == 5
    assert source.count('namespace: {{ include "buildit.stageNamespace" . }}') == 2


def test_stage_pods_get_a_service_account_without_token_and_without_bindings() -> None:
    account = one("stage-serviceaccount.yaml", "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for name in manifest_names():
        binds = "kind: RoleBinding" in text(name) or "kind: ClusterRoleBinding" in text(name)
        assert not (binds and "buildit.stageServiceAccountName" in text(name)), (
            f"{name} binds the stage service account: it must have no role"
        )
    # The agents are told its name, to put it on the stage pods they make.
    daemonset = one("agent-daemonset.yaml", "DaemonSet")
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert "BUILDIT_AGENT_STAGE_SERVICE_ACCOUNT" in _env(container)


def test_the_controller_gets_no_api_token() -> None:
    assert one("controller-serviceaccount.yaml", "ServiceAccount")["automountServiceAccountToken"] is False
    pod = one("controller-deployment.yaml", "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_the_agent_knows_its_node_pod_and_namespace_from_the_downward_api() -> None:
    daemonset = one("agent-daemonset.yaml", "DaemonSet")
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    names = [e["name"] for e in container["env"]]
    # $(NODE_NAME) is expanded by the kubelet only when NODE_NAME comes earlier in the list.
    assert env["BUILDIT_AGENT_NAME"]["value"] == "$(NODE_NAME)"
    assert names.index("NODE_NAME") < names.index("BUILDIT_AGENT_NAME")
    assert env["BUILDIT_REGISTRATION_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": PLACEHOLDER,
        "key": PLACEHOLDER,
    }


def test_the_agent_runs_the_kubernetes_executor_against_the_controller_service() -> None:
    daemonset = one("agent-daemonset.yaml", "DaemonSet")
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["buildit"]
    args = container["args"]
    assert args == [
        "agent",
        "--controller",
        PLACEHOLDER,
        "--executor",
        "kubernetes",
        "--namespace",
        PLACEHOLDER,
    ]
    source = text("agent-daemonset.yaml")
    assert '- {{ include "buildit.controllerAddress" . | quote }}' in source
    assert '- {{ include "buildit.stageNamespace" . | quote }}' in source
    assert "--registration-token" not in source, "a token on the command line shows in ps"


def test_no_template_mounts_a_host_path() -> None:
    for name in manifest_names():
        assert "hostPath" not in code(name), name
    volumes = one("agent-daemonset.yaml", "DaemonSet")["spec"]["template"]["spec"]["volumes"]
    assert {v["name"]: v for v in volumes}["agent"] == {"name": "agent", "emptyDir": {}}


def test_the_controller_is_probed_on_its_health_and_readiness_endpoints() -> None:
    deployment = one("controller-deployment.yaml", "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| `GET /health` |" in readme
    assert "| `GET /ready` |" in readme
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_service_exposes_http_and_grpc_by_name() -> None:
    service = one("controller-service.yaml", "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"http", "grpc"}
    assert ports["http"]["targetPort"] == "http"
    assert ports["grpc"]["targetPort"] == "grpc"
    assert ports["grpc"]["appProtocol"] == "grpc"


def _configuration_table() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Configuration\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_every_buildit_variable_the_chart_sets_is_a_documented_setting() -> None:
    table = _configuration_table()
    names: set[str] = set()
    for name in template_names():
        names |= set(re.findall(r"\bBUILDIT_[A-Z_]+\b", text(name)))
    assert names, "the chart sets BUILDIT_* variables"
    undocumented = {n for n in names if f"`{n}`" not in table}
    assert undocumented == set()


def test_secrets_made_by_the_chart_are_kept_and_read_back() -> None:
    source = text("secrets.yaml")
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in source
    assert one("secrets.yaml", "Secret")["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # BUILDIT_SECRET_KEY is the base64 of 32 bytes; Secret data is base64 again.
    assert "randAscii 32 | b64enc | b64enc" in source


def _schema_leaves(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The values the schema names one by one: free-form maps (resources, annotations…) are one."""
    leaves: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        leaves |= _schema_leaves(sub, path) if "properties" in sub else {path}
    return leaves


def test_the_chart_readme_documents_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    leaves = _schema_leaves(schema)
    assert "agent.stages.pids" in leaves
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    undocumented = {path for path in leaves if f"| `{path}` |" not in readme}
    assert undocumented == set()


def test_every_value_in_values_yaml_is_named_by_the_schema() -> None:
    """Every value the schema names has its default in values.yaml (the reverse: values.yaml is valid)."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    leaves = _schema_leaves(schema)
    top = {path for path in _leaf_paths(values()) if any(path == leaf for leaf in leaves)}
    assert top == leaves
