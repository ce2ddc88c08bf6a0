"""values.schema.json: helm checks the merged values against it at install, upgrade, lint and
template, so a bad value stops an install before anything is created. Here the same check runs
with the `jsonschema` package (draft 7, the draft the schema declares), on values.yaml, on the
example values file merged over it (as helm merges), and on values that must be refused, each
refusal asserted with the path helm would name."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from tests.unit.charts.chart_files import CHART, values

Values = dict[str, Any]


def _schema() -> dict[str, Any]:
    loaded = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _validator() -> Draft7Validator:
    return Draft7Validator(_schema())


def _merge(base: Values, override: Values) -> Values:
    """Helm's merge of a values file over values.yaml: maps merge key by key, the rest replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _errors(data: Values) -> list[tuple[list[str | int], str]]:
    return sorted(
        ((list(e.absolute_path), str(e.validator)) for e in _validator().iter_errors(data)),
        key=repr,
    )


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(schema)


def test_values_yaml_is_valid() -> None:
    assert _errors(values()) == []


@pytest.mark.parametrize("example", sorted(p.name for p in (CHART / "examples").glob("*.yaml")))
def test_each_example_values_file_is_valid_over_the_defaults(example: str) -> None:
    override = yaml.safe_load((CHART / "examples" / example).read_text(encoding="utf-8"))
    assert _errors(_merge(values(), override)) == []


def test_the_production_example_sets_what_a_production_install_needs() -> None:
    override = yaml.safe_load((CHART / "examples" / "production.yaml").read_text(encoding="utf-8"))
    assert override["database"]["existingSecret"]
    assert override["secrets"]["existingSecret"]
    assert override["controller"]["grpcTls"]["enabled"] is True
    assert override["agent"]["stages"]["namespace"] not in ("", "default")


def _set(path: str, value: object) -> Callable[[Values], None]:
    def change(data: Values) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _delete(path: str) -> Callable[[Values], None]:
    def change(data: Values) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        del node[last]

    return change


def _both(*changes: Callable[[Values], None]) -> Callable[[Values], None]:
    def change(data: Values) -> None:
        for one in changes:
            one(data)

    return change


# (id, change to the defaults, the path of the refusal, the JSON Schema keyword that refuses)
BAD: list[tuple[str, Callable[[Values], None], list[str | int], str]] = [
    ("two-controller-replicas", _set("controller.replicas", 2), ["controller", "replicas"], "maximum"),
    ("replicas-as-text", _set("controller.replicas", "1"), ["controller", "replicas"], "type"),
    ("zero-capacity", _set("agent.capacity", 0), ["agent", "capacity"], "minimum"),
    ("capacity-as-text", _set("agent.capacity", "4"), ["agent", "capacity"], "type"),
    ("unknown-agent-key", _set("agent.replicas", 3), ["agent"], "additionalProperties"),
    ("unknown-top-level-key", _set("postgresql", {"enabled": True}), [], "additionalProperties"),
    ("typo-in-image-key", _set("image.pullPolcy", "Always"), ["image"], "additionalProperties"),
    ("bad-pull-policy", _set("image.pullPolicy", "Sometimes"), ["image", "pullPolicy"], "enum"),
    ("bad-log-level", _set("logLevel", "verbose"), ["logLevel"], "enum"),
    ("port-out-of-range", _set("controller.httpPort", 70000), ["controller", "httpPort"], "maximum"),
    (
        "bad-service-type",
        _set("controller.service.type", "Ingress"),
        ["controller", "service", "type"],
        "enum",
    ),
    ("missing-database", _delete("database"), [], "required"),
    ("missing-agent-capacity", _delete("agent.capacity"), ["agent"], "required"),
    (
        "database-url-and-secret",
        _both(_set("database.url", "postgresql://u:p@db:5432/b"), _set("database.existingSecret", "db")),
        ["database"],
        "not",
    ),
    ("database-url-not-postgres", _set("database.url", "mysql://db/b"), ["database", "url"], "pattern"),
    (
        "grpc-tls-without-secret",
        _set("controller.grpcTls.enabled", True),
        ["controller", "grpcTls", "secretName"],
        "minLength",
    ),
    (
        "stage-namespace-not-dns-1123",
        _set("agent.stages.namespace", "Build_Stages"),
        ["agent", "stages", "namespace"],
        "pattern",
    ),
    (
        "stage-memory-not-a-quantity",
        _set("agent.stages.memory", "lots"),
        ["agent", "stages", "memory"],
        "oneOf",
    ),
    ("negative-pids", _set("agent.stages.pids", -1), ["agent", "stages", "pids"], "minimum"),
    (
        "label-value-with-comma",
        _set("agent.labels", {"os": "linux,arch=arm"}),
        ["agent", "labels", "os"],
        "pattern",
    ),
    (
        "toleration-bad-operator",
        _set("agent.tolerations", [{"key": "ci", "operator": "Maybe"}]),
        ["agent", "tolerations", 0, "operator"],
        "enum",
    ),
    (
        "resources-not-quantities",
        _set("agent.resources", {"limits": {"memory": "a lot"}}),
        ["agent", "resources", "limits", "memory"],
        "pattern",
    ),
    (
        "existing-secret-name-invalid",
        _set("secrets.existingSecret", "My Secret"),
        ["secrets", "existingSecret"],
        "pattern",
    ),
    ("public-url-without-scheme", _set("publicUrl", "ci.example.com"), ["publicUrl"], "pattern"),
    (
        "env-without-name",
        _set("controller.extraEnv", [{"value": "x"}]),
        ["controller", "extraEnv", 0],
        "required",
    ),
]


@pytest.mark.parametrize(("change", "path", "keyword"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_are_refused_naming_their_path(
    change: Callable[[Values], None], path: list[str | int], keyword: str
) -> None:
    data = values()
    change(data)
    assert _errors(data) == [(path, keyword)]


def test_the_same_bad_value_in_the_good_example_is_refused_too() -> None:
    """The refusals do not depend on the defaults: the production example with replicas 2 fails."""
    override = yaml.safe_load((CHART / "examples" / "production.yaml").read_text(encoding="utf-8"))
    override["controller"]["replicas"] = 2
    assert _errors(_merge(values(), override)) == [(["controller", "replicas"], "maximum")]
