"""The fake controller every agent test talks to (real gRPC on 127.0.0.1), and a Git server for sources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.git_server import GitHttpServer, Upstream, git


@pytest.fixture
async def fake() -> AsyncIterator[FakeController]:
    controller = FakeController()
    await controller.start()
    try:
        yield controller
    finally:
        await controller.stop()


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    work = tmp_path / "upstream-work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    served = tmp_path / "served"
    served.mkdir()
    bare = served / "project.git"
    git(served, "init", "-q", "--bare", str(bare))
    return Upstream(work, bare)


@pytest.fixture
def git_server(upstream: Upstream, fake: FakeController) -> Iterator[GitHttpServer]:
    """Serves `upstream` to agents the fake controller issued a token to (as the controller will)."""
    server = GitHttpServer(upstream.bare.parent, lambda token: token in fake.tokens).start()
    try:
        yield server
    finally:
        server.stop()
