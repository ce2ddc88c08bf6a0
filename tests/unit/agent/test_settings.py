"""AgentSettings: flags win over BUILDIT_* variables, defaults, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from agent.cli import add_arguments
from agent.contract.types import Resources
from agent.settings import AgentSettings, parse_controller, parse_labels

ENV = {
    "BUILDIT_CONTROLLER": "env-host:9090",
    "BUILDIT_REGISTRATION_TOKEN": "env-token",
    "BUILDIT_AGENT_NAME": "env-name",
    "BUILDIT_AGENT_LABELS": "arch=arm64",
    "BUILDIT_AGENT_CAPACITY": "4",
    "BUILDIT_AGENT_EXECUTOR": "docker",
    "BUILDIT_AGENT_STATE_DIR": "/var/lib/agent",
    "BUILDIT_AGENT_NETWORK": "none",
}


def test_defaults() -> None:
    settings = AgentSettings.from_sources(controller="ci:9090", env={})
    assert settings == AgentSettings(
        controller="ci:9090",
        registration_token="",
        name=socket.gethostname(),
        labels={},
        capacity=2,
        executor="auto",
        state_dir=Path(".buildit-agent"),
        network="bridge",
    )


def test_environment_fallbacks() -> None:
    settings = AgentSettings.from_sources(env=ENV)
    assert settings == AgentSettings(
        controller="env-host:9090",
        registration_token="env-token",
        name="env-name",
        labels={"arch": "arm64"},
        capacity=4,
        executor="docker",
        state_dir=Path("/var/lib/agent"),
        network="none",
    )


def test_flags_win_over_the_environment() -> None:
    settings = AgentSettings.from_sources(
        controller="flag-host:1",
        registration_token="flag-token",
        name="flag-name",
        labels="gpu=true",
        capacity="1",
        executor="local",
        state_dir="/tmp/s",
        network="host",
        env=ENV,
    )
    assert settings == AgentSettings(
        controller="flag-host:1",
        registration_token="flag-token",
        name="flag-name",
        labels={"gpu": "true"},
        capacity=1,
        executor="local",
        state_dir=Path("/tmp/s"),
        network="host",
    )


def test_empty_environment_values_count_as_unset() -> None:
    settings = AgentSettings.from_sources(controller="c:1", env={"BUILDIT_AGENT_CAPACITY": ""})
    assert settings.capacity == 2


def test_cli_flags_reach_the_settings() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--controller",
            "h:2",
            "--labels",
            "a=b",
            "--capacity",
            "3",
            "--executor",
            "local",
            "--network",
            "none",
        ]
    )
    assert (args.controller, args.labels, args.capacity, args.executor, args.network) == (
        "h:2",
        "a=b",
        "3",
        "local",
        "none",
    )
    assert args.registration_token is None and args.state_dir is None and args.name is None


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        (" arch = amd64 , gpu=true,", {"arch": "amd64", "gpu": "true"}),
        ("kubernetes.io/arch=amd64", {"kubernetes.io/arch": "amd64"}),
        ("empty=", {"empty": ""}),
    ],
)
def test_parse_labels(text: str, labels: dict[str, str]) -> None:
    assert parse_labels(text) == labels


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arch", "must be KEY=VALUE"),
        ("=x", "label key ''"),
        ("-a=1", "must start and end with a letter or digit"),
        ("a b=1", "label key 'a b'"),
        ("a=has space", "may contain only"),
        ("a=1,a=2", "given twice"),
    ],
)
def test_bad_labels(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_labels(text)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("address", ["ci.example.com:9090", "127.0.0.1:1", "[::1]:9090", " host:65535 "])
def test_good_controller_addresses(address: str) -> None:
    assert parse_controller(address) == address.strip()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("host", "must be HOST:PORT"),
        (":9090", "must be HOST:PORT"),
        ("host:", "port must be a number"),
        ("host:0", "port must be a number"),
        ("host:70000", "port must be a number"),
        ("http://host:9090", "must be HOST:PORT"),
        ("::1:9090", "IPv6 host in brackets"),
    ],
)
def test_bad_controller_addresses(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_controller(address)


def test_missing_controller_names_flag_and_variable() -> None:
    with pytest.raises(ValueError, match="--controller HOST:PORT or set BUILDIT_CONTROLLER"):
        AgentSettings.from_sources(env={})


@pytest.mark.parametrize(
    ("capacity", "message"), [("two", "whole number"), ("0", "between 1 and"), ("-1", "between 1 and")]
)
def test_bad_capacity(capacity: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentSettings.from_sources(controller="c:1", capacity=capacity, env={})


def test_bad_executor_from_the_environment() -> None:
    with pytest.raises(ValueError, match="must be one of local, docker, kubernetes, auto"):
        AgentSettings.from_sources(controller="c:1", env={"BUILDIT_AGENT_EXECUTOR": "podman"})


def test_executor_is_case_insensitive() -> None:
    assert AgentSettings.from_sources(controller="c:1", executor="Local", env={}).executor == "local"


def test_blank_name_is_refused() -> None:
    with pytest.raises(ValueError, match="--name must not be blank"):
        AgentSettings.from_sources(controller="c:1", name="  ", env={})


# --- TLS: grpcs:// addresses and the CA file ----------------------------------------------------


def test_a_grpcs_address_asks_for_tls_and_keeps_host_port(tmp_path: Path) -> None:
    from tests.tlscerts import make_ca

    ca = make_ca(tmp_path)
    settings = AgentSettings.from_sources(controller="grpcs://ci.example:9090", ca_file=str(ca.cert), env={})
    assert (settings.controller, settings.tls, settings.ca_file) == ("ci.example:9090", True, ca.cert)
    plain = AgentSettings.from_sources(controller="ci.example:9090", env={})
    assert (plain.controller, plain.tls, plain.ca_file) == ("ci.example:9090", False, None)
    from_env = AgentSettings.from_sources(
        env={"BUILDIT_CONTROLLER": "GRPCS://[::1]:9090", "BUILDIT_CA_FILE": str(ca.cert)}
    )
    assert (from_env.controller, from_env.tls, from_env.ca_file) == ("[::1]:9090", True, ca.cert)
    # Without --ca-file a TLS agent trusts the system's CAs.
    assert AgentSettings.from_sources(controller="grpcs://ci:1", env={}).ca_file is None


def test_a_ca_file_without_tls_says_how_to_ask_for_tls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is for TLS: write the controller address as grpcs://ci:9090"):
        AgentSettings.from_sources(controller="ci:9090", ca_file=str(tmp_path / "ca.pem"), env={})


def test_an_unreadable_or_non_pem_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=rf"cannot read the CA file {missing} \(--ca-file\)"):
        AgentSettings.from_sources(controller="grpcs://c:1", ca_file=str(missing), env={})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=rf"the CA file {junk} \(--ca-file\) holds no PEM certificate"):
        AgentSettings.from_sources(controller="grpcs://c:1", ca_file=str(junk), env={})
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="is not a valid PEM certificate"):
        AgentSettings.from_sources(controller="grpcs://c:1", ca_file=str(broken), env={})


def test_the_ca_file_flag_is_parsed() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--controller", "grpcs://h:1", "--ca-file", "/etc/buildit/ca.pem"])
    assert (args.controller, args.ca_file) == ("grpcs://h:1", "/etc/buildit/ca.pem")


def test_the_work_dir_is_beside_the_state_dir_unless_given() -> None:
    settings = AgentSettings.from_sources(controller="ci:9090", state_dir="/var/lib/agent", env={})
    assert settings.work_dir is None
    assert settings.work_root == Path("/var/lib/agent-work")
    given = AgentSettings.from_sources(
        controller="ci:9090", env={"BUILDIT_AGENT_WORK_DIR": "/srv/builds", "BUILDIT_AGENT_STATE_DIR": "/s"}
    )
    assert given.work_root == Path("/srv/builds")
    assert AgentSettings.from_sources(controller="ci:9090", work_dir="/x", env=given_env()).work_root == Path(
        "/x"
    )


def given_env() -> dict[str, str]:
    return {"BUILDIT_AGENT_WORK_DIR": "/from-env"}


@pytest.mark.parametrize(
    ("state", "work"),
    [("/srv/agent", "/srv/agent"), ("/srv/agent", "/srv/agent/work"), ("/srv/agent/state", "/srv/agent")],
)
def test_a_work_dir_overlapping_the_state_dir_is_refused(state: str, work: str) -> None:
    with pytest.raises(ValueError, match="must be separate directories"):
        AgentSettings.from_sources(controller="ci:9090", state_dir=state, work_dir=work, env={})


def test_report_wait_from_flag_or_environment_and_checked() -> None:
    assert AgentSettings.from_sources(controller="ci:9090", env={}).report_wait_s == 60.0
    env = {"BUILDIT_AGENT_REPORT_WAIT": "5"}
    assert AgentSettings.from_sources(controller="ci:9090", env=env).report_wait_s == 5.0
    assert AgentSettings.from_sources(controller="ci:9090", report_wait="0", env=env).report_wait_s == 0.0
    for bad in ("soon", "-1", "86401", "nan"):
        with pytest.raises(ValueError, match="report wait"):
            AgentSettings.from_sources(controller="ci:9090", report_wait=bad, env={})


def test_stage_limits_default_to_a_pids_cap_only_and_take_flags_or_the_environment() -> None:
    assert AgentSettings.from_sources(controller="c:1", env={}).stage_defaults == Resources(pids=4096)
    env = {
        "BUILDIT_AGENT_STAGE_CPUS": "2",
        "BUILDIT_AGENT_STAGE_MEMORY": "4Gi",
        "BUILDIT_AGENT_STAGE_PIDS": "0",
    }
    from_env = AgentSettings.from_sources(controller="c:1", env=env)
    assert from_env.stage_defaults == Resources(cpu_millis=2000, memory_bytes=4 * 2**30, pids=0)
    flags = AgentSettings.from_sources(controller="c:1", stage_cpus="500m", stage_pids="64", env=env)
    assert flags.stage_defaults == Resources(cpu_millis=500, memory_bytes=4 * 2**30, pids=64)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("stage_cpus", "lots", "--stage-cpus (BUILDIT_AGENT_STAGE_CPUS) 'lots' must be cores or millicores"),
        (
            "stage_memory",
            "1Mi",
            "--stage-memory (BUILDIT_AGENT_STAGE_MEMORY) '1Mi' must be a size of at least 6Mi",
        ),
        ("stage_pids", "-1", "--stage-pids (BUILDIT_AGENT_STAGE_PIDS) '-1' must be a whole number"),
    ],
)
def test_bad_stage_limits_name_the_flag(flag: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        AgentSettings.from_sources(controller="c:1", env={}, **{flag: value})
