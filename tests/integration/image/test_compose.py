"""compose.yaml as Compose reads it (`config`: interpolated, checked against the Compose schema).

It is not run here: its PostgreSQL image cannot be pulled and its services talk over a bridge
network, which this machine's dockerd has none of (test_image.py runs the same image with the same
mounts on the host network instead). What is checked is what makes the file work elsewhere: it
parses, secrets come from the environment (.env) and are required, and the agent gets the socket,
its directory at the same path inside and outside, root, and its controller.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[3]


def _compose() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("no Compose: run scripts/ensure-compose.sh")


def _config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`compose config` of the repository's compose.yaml, with `env` as its .env file."""
    (tmp_path / "compose.yaml").write_text((ROOT / "compose.yaml").read_text())
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDIT_", "POSTGRES_"))}
    return subprocess.run(
        [*_compose(), "--project-directory", str(tmp_path), "-f", str(tmp_path / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        cwd=tmp_path,
    )


def test_compose_file_runs_controller_postgres_and_a_docker_agent(tmp_path: Path) -> None:
    done = _config(
        tmp_path,
        {"POSTGRES_PASSWORD": "pw123", "BUILDIT_REGISTRATION_TOKEN": "tok456", "POSTGRES_IMAGE": "pg:local"},
    )
    assert done.returncode == 0, done.stderr
    services: dict[str, Any] = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"postgres", "controller", "agent"}
    assert services["postgres"]["image"] == "pg:local"
    controller, agent = services["controller"], services["agent"]
    assert controller["image"] == agent["image"] == "buildit:dev"
    assert (
        controller["environment"]["BUILDIT_DATABASE_URL"]
        == "postgresql://buildit:pw123@postgres:5432/buildit"
    )
    # The secrets are in the environment, never in a command line (`ps` shows those).
    assert agent["environment"]["BUILDIT_REGISTRATION_TOKEN"] == "tok456"
    assert not any("tok456" in part for part in agent["command"] + controller["command"])
    assert agent["command"][:3] == ["agent", "--controller", "controller:9090"]
    assert agent["user"] == "root"
    volumes = [str(volume) for volume in agent["volumes"]]
    assert any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in volumes), volumes
    # The work dir is the same path on both sides of the mount.
    assert any(v.startswith("/var/lib/buildit-agent:/var/lib/buildit-agent") for v in volumes), volumes
    assert agent["environment"]["BUILDIT_AGENT_WORK_DIR"] == "/var/lib/buildit-agent/work"


def test_compose_file_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    done = _config(tmp_path, {"BUILDIT_REGISTRATION_TOKEN": "tok456"})
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr
