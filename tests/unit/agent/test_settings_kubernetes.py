"""The Kubernetes executor's settings: flags and env (NODE_NAME from the downward API), clear errors."""

from __future__ import annotations

import argparse

import pytest

from agent.cli import add_arguments
from agent.settings import AgentSettings, KubernetesSettings

KUBE_ENV = {
    "BUILDIT_AGENT_EXECUTOR": "kubernetes",
    "BUILDIT_AGENT_NAMESPACE": "builds",
    "BUILDIT_AGENT_HELPER_IMAGE": "buildit:1.0",
    "NODE_NAME": "node-a",
}


def test_the_chart_s_environment_gives_the_kubernetes_settings() -> None:
    settings = AgentSettings.from_sources(controller="ci:9090", env=KUBE_ENV)
    assert settings.executor == "kubernetes"
    assert settings.kubernetes == KubernetesSettings("builds", "node-a", "buildit:1.0", "buildit-stage")


def test_flags_win_over_the_environment() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--executor",
            "kubernetes",
            "--namespace",
            "ci",
            "--helper-image",
            "img:2",
            "--stage-service-account",
            "sa",
        ]
    )
    settings = AgentSettings.from_sources(
        controller="ci:9090",
        executor=args.executor,
        namespace=args.namespace,
        helper_image=args.helper_image,
        stage_service_account=args.stage_service_account,
        env=KUBE_ENV,
    )
    assert settings.kubernetes == KubernetesSettings("ci", "node-a", "img:2", "sa")


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("NODE_NAME", "needs this agent's node name in NODE_NAME"),
        ("BUILDIT_AGENT_NAMESPACE", "pass --namespace NS"),
        ("BUILDIT_AGENT_HELPER_IMAGE", "--helper-image IMAGE"),
    ],
)
def test_a_missing_setting_is_named(missing: str, says: str) -> None:
    env = {k: v for k, v in KUBE_ENV.items() if k != missing}
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        AgentSettings.from_sources(controller="ci:9090", env=env)


def test_a_bad_namespace_and_a_namespace_without_kubernetes_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes namespace name"):
        AgentSettings.from_sources(
            controller="ci:9090", env={**KUBE_ENV, "BUILDIT_AGENT_NAMESPACE": "Bad_NS"}
        )
    with pytest.raises(ValueError, match="is for --executor kubernetes"):
        AgentSettings.from_sources(controller="ci:9090", executor="docker", namespace="builds", env={})
