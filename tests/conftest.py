"""Shared test fixtures.

Docker tests run against the real engine that `make test` starts (scripts/ensure-docker.sh).
Under `make test` BUILDIT_TEST_DOCKER=required, so an unreachable engine fails the run instead of
silently skipping the container tests; run by hand without an engine, they are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess

import pytest

TEST_IMAGE = os.environ.get("BUILDIT_TEST_IMAGE", "buildit-test/busybox:1")


def _docker_problem() -> str | None:
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no Docker engine reachable ({exc.__class__.__name__}); run scripts/ensure-docker.sh"
    probe = subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True, timeout=20)
    if probe.returncode != 0:
        return f"test image {TEST_IMAGE} missing; run scripts/ensure-docker.sh"
    return None


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The local busybox test image; fails (under make test) or skips when Docker is unusable."""
    problem = _docker_problem()
    if problem:
        if os.environ.get("BUILDIT_TEST_DOCKER") == "required":
            pytest.fail(problem)
        pytest.skip(problem)
    return TEST_IMAGE
