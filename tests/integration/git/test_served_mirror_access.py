"""Who may fetch a mirror from the controller's `/git/<repo id>.git`: an agent only while it holds a
stage of that repository's runs, a person only with read access in the repository's tenant.

A real in-process controller (HTTP and gRPC on 127.0.0.1); agents speak AgentService through the
agent's own client, and the mirror is asked for over HTTP exactly as an agent's fetch asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.client import ControllerClient, LeaseStream
from agent.contract.types import LeaseRequest, RegisterRequest, StageLease, StageStatus, StageUpdate
from controller.repos.services import RepoRow, RepoSettings
from controller.server import Running, start
from controller.settings import ControllerSettings
from tests.support.credentials import admin_key, issue_key

from .conftest import commit, init_repo

pytestmark = pytest.mark.timeout(90)

PIPELINE = 'pipeline "{name}"\nstage "build" {{ run "true"; artifacts "*"; }}\n'
PASSWORD = "a long enough password"


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    settings = ControllerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        http_port=0,
        grpc_port=0,
        registration_token="enrol",
    )
    running = await start(settings)
    try:
        yield running
    finally:
        await running.stop()


async def watched(running: Running, tmp_path: Path, name: str) -> RepoRow:
    work = init_repo(tmp_path / name)
    commit(work, ".buildit.kdl", PIPELINE.format(name=name))
    assert running.deps.triggers is not None
    return await running.deps.triggers.register(RepoSettings(url=str(work)))


async def enrolled(running: Running, name: str) -> tuple[ControllerClient, str]:
    client = ControllerClient(f"127.0.0.1:{running.grpc_port}")
    response = await client.register(RegisterRequest("enrol", name, {}, ("local",), 1, "0.1.0"))
    client.token = response.agent_token
    return client, response.agent_id


async def next_lease(stream: LeaseStream) -> StageLease:
    async for event in stream.events():
        if isinstance(event, StageLease):
            return event
    raise AssertionError("the lease stream ended")


async def refs(http: httpx.AsyncClient, repo_id: Any, token: str) -> int:
    """The status of a fetch's first request (the ref advertisement) with `token`."""
    response = await http.get(
        f"/git/{repo_id}.git/info/refs",
        params={"service": "git-upload-pack"},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code == 200:
        assert response.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    return response.status_code


async def upload_pack(http: httpx.AsyncClient, repo_id: Any, token: str) -> int:
    response = await http.post(
        f"/git/{repo_id}.git/git-upload-pack",
        content=b"0000",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-git-upload-pack-request"},
    )
    return response.status_code


@contextlib.asynccontextmanager
async def http_client(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.http_port}", timeout=20) as http:
        yield http


async def test_an_agent_reads_a_mirror_only_while_it_holds_a_stage_of_it(
    running: Running, tmp_path: Path
) -> None:
    repo = await watched(running, tmp_path, "app")
    other = await watched(running, tmp_path, "other")
    holder, holder_id = await enrolled(running, "holder")
    bystander, _ = await enrolled(running, "bystander")  # enrolled, valid token, holds nothing
    stream = holder.open_lease_stream(LeaseRequest(holder_id, 1))
    try:
        async with http_client(running) as http:
            assert await refs(http, repo.id, holder.token) == 404  # nothing leased yet
            assert running.deps.triggers is not None
            run = await running.deps.triggers.trigger(repo.id, None, None)
            assert run is not None
            lease = await next_lease(stream)  # leased, not yet reported running

            assert await refs(http, repo.id, holder.token) == 200
            assert await upload_pack(http, repo.id, holder.token) != 404
            # Not another repository's mirror, not another agent, not a made-up id: all alike.
            assert await refs(http, other.id, holder.token) == 404
            assert await refs(http, repo.id, bystander.token) == 404
            assert await upload_pack(http, repo.id, bystander.token) == 404
            assert await refs(http, uuid.uuid4(), holder.token) == 404
            assert (
                await http.get(f"/git/{repo.id}.git/info/refs?service=git-upload-pack")
            ).status_code == 401

            await holder.update_stage(StageUpdate(lease.lease_id, StageStatus.RUNNING))
            assert await refs(http, repo.id, holder.token) == 200
            # The agent's credential reaches no REST route, artifacts included.
            artifacts = f"/api/v1/pipelines/{repo.pipeline_id}/runs/{run.number}/artifacts"
            listed = await http.get(artifacts, headers={"Authorization": f"Bearer {holder.token}"})
            assert listed.status_code == 401

            await holder.update_stage(StageUpdate(lease.lease_id, StageStatus.SUCCEEDED, exit_code=0))
            assert await refs(http, repo.id, holder.token) == 404  # the stage is over
    finally:
        stream.cancel()
        await holder.close()
        await bystander.close()
        await _stream_closed(running, holder_id)


async def test_people_read_mirrors_of_the_tenants_they_can_read(running: Running, tmp_path: Path) -> None:
    repo = await watched(running, tmp_path, "app")
    base = f"http://127.0.0.1:{running.http_port}"
    admin = await asyncio.to_thread(admin_key, base, tmp_path / "data")
    async with http_client(running) as http:
        as_admin = {"Authorization": f"Bearer {admin}"}
        assert (
            await http.post("/api/v1/tenants", json={"slug": "blue"}, headers=as_admin)
        ).status_code == 201
        for name, tenant in (("vera", "default/default"), ("bea", "default/blue")):
            made = await http.post(
                "/api/v1/users", json={"username": name, "password": PASSWORD}, headers=as_admin
            )
            assert made.status_code == 201, made.text
            grant = await http.put(
                "/api/v1/grants",
                json={"user": name, "role": "viewer"},
                headers={**as_admin, "X-BuildIt-Tenant": tenant},
            )
            assert grant.status_code == 200, grant.text
        vera = await asyncio.to_thread(issue_key, base, "vera", PASSWORD)
        bea = await asyncio.to_thread(issue_key, base, "bea", PASSWORD)
        assert await refs(http, repo.id, admin) == 200
        assert await refs(http, repo.id, vera) == 200  # a viewer of the repository's tenant
        assert await refs(http, repo.id, bea) == 404  # a viewer of another tenant only


async def _stream_closed(running: Running, agent_id: str) -> None:
    """Let the controller finish closing a lease stream before the test stops it (see test_rpc)."""
    conn = running.deps.scheduler.agents[uuid.UUID(agent_id)]
    for _ in range(100):
        if conn.events is None:
            return
        await asyncio.sleep(0.05)
