"""The container image (Dockerfile) for real: built from a Debian base made here, run as a controller
and as an agent with the Docker socket, both on the host network, running a container stage.

What it proves: the image builds from a plain Debian bookworm with the dependencies constraints.txt
pins; `buildit controller` in it, as the image's non-root user, serves the REST API, the web UI with
its vendored front-end files and its HEALTHCHECK; `buildit agent` in it (as root, as the README
says: it removes what root stage containers write into workspaces) registers with its token from
a file (its healthcheck turns healthy then), leases a stage and runs it as a sibling container
through the mounted socket, with a work dir at the same path inside and outside (stage containers
bind-mount their workspace by host path); the run succeeds with the stage's log, the workspace is
removed afterwards, and both containers stop cleanly on SIGTERM (exit 0).

No registry is reachable here, so the base image is debootstrapped from this machine's apt mirror by
scripts/ensure-image-base.sh (once: kept as buildit-test/debian-base:bookworm). The build needs the
network for apt and PyPI, so it runs with `--network host` (dockerd runs with --bridge=none here).
Slow (minutes on a fresh machine): marked `image`, run by `make test-image`, not by `make test`.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet.harness import Controller, wait_for
from tests.support.credentials import admin_key

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[3]
BASE_IMAGE = os.environ.get("BUILDIT_TEST_BASE_IMAGE", "buildit-test/debian-base:bookworm")
IMAGE = "buildit-test/buildit:test"
#: The image's user (Dockerfile: useradd --uid 10001); mounted directories are handed to it.
IMAGE_UID = 10001
TOKEN = "image-test-registration-token"
SOCKET = Path("/var/run/docker.sock")


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


@pytest.fixture(scope="module")
def image(docker_image: str) -> str:
    """The BuildIt image, built from the Dockerfile on the locally made Debian base."""
    subprocess.run([str(ROOT / "scripts/ensure-image-base.sh")], check=True, timeout=1200)
    # As an operator builds it: `make image` (vendored web files, wheels built here with
    # constraints.txt, docker build --network host: dockerd runs with --bridge=none here).
    build = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "image", f"IMAGE={IMAGE}", f"IMAGE_BASE={BASE_IMAGE}"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return IMAGE


def _owned_dir(path: Path, mode: int = 0o700) -> Path:
    """A directory the image's user owns, as an operator prepares a volume for it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, IMAGE_UID, IMAGE_UID)
    path.chmod(mode)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _health(name: str) -> str:
    return _docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()


def _logs(name: str) -> str:
    done = _docker("logs", name, check=False)
    return done.stdout + done.stderr


@contextlib.contextmanager
def _container(name: str, args: list[str]) -> Iterator[str]:
    """`docker run -d` a container and remove it (with its anonymous volumes) afterwards."""
    _docker("rm", "-f", "-v", name, check=False)
    _docker("run", "-d", "--name", name, *args)
    try:
        yield name
    finally:
        _docker("rm", "-f", "-v", name, check=False)


class ImageController(Controller):
    """The harness's REST helpers, talking to the controller running in the image."""

    def __init__(self, workdir: Path, http_port: int) -> None:
        super().__init__(workdir, database_url="")
        self.http_port = http_port


def test_the_image_runs_a_controller_and_a_docker_agent_that_runs_a_container_stage(
    image: str, docker_image: str, tmp_path: Path
) -> None:
    suffix = f"{os.getpid()}-{tmp_path.name}"
    data = _owned_dir(tmp_path / "data")
    # The agent's directory: mounted at the same path inside the container, so the paths of stage
    # workspaces the agent hands to the engine are paths on this host too.
    agent_root = tmp_path / "agent-root"
    agent_root.mkdir()
    token_file = tmp_path / "registration-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o400)
    http_port, grpc_port = _free_port(), _free_port()
    health = ["--health-interval", "1s", "--health-timeout", "5s", "--health-start-period", "60s"]

    controller_args = [
        "--network", "host", *health,
        "-v", f"{data}:/var/lib/buildit",
        "-e", f"BUILDIT_REGISTRATION_TOKEN={TOKEN}",
        image, "controller", "--host", "127.0.0.1",
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip
    with _container(f"buildit-image-test-controller-{suffix}", controller_args) as controller_name:
        wait_for(
            lambda: _health(controller_name) == "healthy" or "exited" in _state(controller_name),
            120,
            "the controller container's healthcheck",
        )
        assert _health(controller_name) == "healthy", _logs(controller_name)
        api = ImageController(tmp_path, http_port)
        # The first admin's password is in the data dir the container wrote (as the image's user).
        assert (data / "initial-admin-password").stat().st_uid == IMAGE_UID
        api.api_key = admin_key(api.base_url, data)

        # The web UI is served with its vendored front-end files.
        status, page, _ = api.request("GET", "/login", key="")
        assert status == 200 and "/static/vendor/htmx.min.js" in page, page
        status, script, _ = api.request("GET", "/static/vendor/htmx.min.js", key="")
        assert status == 200 and "htmx" in script

        agent_args = [
            # root: stage containers write the workspace as their own user (root, often), and the
            # agent must remove it afterwards; the socket is root on this host anyway.
            "--network", "host", "--user", "root", *health,
            "-v", f"{SOCKET}:{SOCKET}",
            "-v", f"{agent_root}:{agent_root}",
            "-v", f"{token_file}:/run/secrets/buildit-registration-token:ro",
            "-e", f"BUILDIT_AGENT_STATE_DIR={agent_root}/state",
            "-e", f"BUILDIT_AGENT_WORK_DIR={agent_root}/work",
            image, "agent", "--controller", f"127.0.0.1:{grpc_port}",
            "--registration-token-file", "/run/secrets/buildit-registration-token",
            "--name", f"image-agent-{suffix}", "--executor", "docker", "--network", "none",
        ]  # fmt: skip
        with _container(f"buildit-image-test-agent-{suffix}", agent_args) as agent_name:
            wait_for(
                lambda: _health(agent_name) == "healthy" or "exited" in _state(agent_name),
                120,
                "the agent container's healthcheck (registered)",
            )
            assert _health(agent_name) == "healthy", _logs(agent_name)
            assert (agent_root / "state" / "agent.json").is_file()
            agents = wait_for(lambda: api.agents(), 30, "the agent in GET /api/v1/agents")
            assert [agent["name"] for agent in agents] == [f"image-agent-{suffix}"]

            config = (
                'pipeline "image-test"\n'
                'stage "in-container" {\n'
                f'    image "{docker_image}"\n'
                '    run "echo hello from $(uname -s) in $(pwd) as uid $(id -u)"\n'
                '    run "mkdir -p out && echo made-in-the-stage > out/file.txt && cat out/file.txt"\n'
                "}\n"
            )
            pipeline = api.create_pipeline(config)
            number = api.trigger(pipeline)
            run = api.wait_run(pipeline, number, timeout=120)
            log = api.log(pipeline, number, "in-container")
            assert run["status"] == "succeeded", (run, log, _logs(agent_name))
            assert re.search(r"hello from Linux in /workspace as uid 0", log), log
            assert "made-in-the-stage" in log, log
            # The stage's workspace (with what the stage, as root, wrote into it) is gone.
            workspaces = agent_root / "work" / "workspaces"
            wait_for(lambda: not any(workspaces.iterdir()), 30, "the stage workspace to be removed")

            # SIGTERM drains the agent: it exits 0 (tini passes the signal on).
            _docker("stop", "--time", "30", agent_name, timeout=60)
            assert _state(agent_name) == "exited 0", _logs(agent_name)
        _docker("stop", "--time", "30", controller_name, timeout=60)
        assert _state(controller_name) == "exited 0", _logs(controller_name)


def _state(name: str) -> str:
    return _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()


def test_an_agent_that_has_not_registered_is_unhealthy(image: str, tmp_path: Path) -> None:
    # No network: the agent retries its unreachable controller, and its healthcheck says why it is
    # not healthy (the same check passes in the test above once the agent registered).
    args = [
        "--network", "none", "--user", "root", "-e", f"BUILDIT_REGISTRATION_TOKEN={TOKEN}",
        image, "agent", "--controller", "127.0.0.1:1", "--executor", "local",
    ]  # fmt: skip
    with _container(f"buildit-image-test-unregistered-{os.getpid()}-{tmp_path.name}", args) as name:
        wait_for(lambda: "unreachable" in _logs(name), 60, "the agent's retry")
        check = _docker("exec", name, "buildit-healthcheck", check=False)
        assert check.returncode == 1, check
        assert "the agent has not registered yet" in check.stderr, check.stderr
        assert _state(name) == "running 0"
