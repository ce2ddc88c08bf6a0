"""The chart through a real `helm`: lint, render, and strict Kubernetes schema validation of every
rendered manifest (`kubernetes-validate`, the official OpenAPI-derived schemas, unknown fields
refused) for the oldest and newest Kubernetes minors the chart supports.

helm cannot be installed on the machines this project is built on (see DESIGN.md), so here these
tests are skipped, and say why; they run wherever `helm` is on PATH. Without helm, the chart is
checked as text in tests/unit/charts/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.charts.chart_files import CHART

HELM = shutil.which("helm")
pytestmark = pytest.mark.skipif(
    HELM is None,
    reason="helm not installed: helm lint/template and strict validation of rendered manifests did not run",
)

# chart kubeVersion is >=1.29; kubernetes-validate 1.37 bundles schemas up to 1.37.
KUBE_VERSIONS = ["1.29", "1.37"]
EXAMPLE = CHART / "examples" / "production.yaml"
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "production": ["-f", str(EXAMPLE)],
    "minimal-no-agent-no-persistence": [
        "--set",
        "agent.enabled=false",
        "--set",
        "controller.persistence.enabled=false",
    ],
    "plain-database-url": ["--set", "database.url=postgresql://buildit:pw@db:5432/buildit"],
}


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def _render(args: list[str], kube_version: str = "1.37.0") -> list[dict[str, Any]]:
    done = _helm(
        "template", "buildit", str(CHART), "--namespace", "buildit", "--kube-version", kube_version, *args
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_passes(name: str) -> None:
    done = _helm("lint", "--strict", str(CHART), "--namespace", "buildit", *VALUE_SETS[name])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_manifest_passes_strict_schema_validation(name: str, version: str) -> None:
    import kubernetes_validate

    docs = _render(VALUE_SETS[name], kube_version=f"{version}.0")
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} ({name}, {version}): {exc}")


def test_the_rendered_chart_has_its_parts() -> None:
    docs = _render(["-f", str(EXAMPLE)])
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert "DaemonSet/buildit-agent" in kinds
    assert "Deployment/buildit-controller" in kinds
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "buildit-stages"
    assert not any("pods/exec" in r["resources"] or "pods/attach" in r["resources"] for r in role["rules"])
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    args = daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "agent",
        "--controller",
        "grpcs://buildit-controller.buildit.svc:9090",
        "--executor",
        "kubernetes",
        "--namespace",
        "buildit-stages",
    ]
    # existing Secrets named in the example: the chart makes none of its own
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_bad_values_stop_helm_naming_the_value() -> None:
    done = _helm("template", "buildit", str(CHART), "--set", "controller.replicas=2")
    assert done.returncode != 0
    assert "replicas" in done.stderr


def test_the_chart_directory_is_what_helm_packages(tmp_path: Path) -> None:
    done = _helm("package", str(CHART), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("buildit-*.tgz"))
