"""agent.session against the fake controller: registration, the stored identity, re-registration."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import grpc
import pytest

from agent.errors import AgentExit
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.harness import running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)


# --- registration and identity -------------------------------------------------------------------------


async def test_registers_once_stores_token_0600_and_reuses_it(fake: FakeController, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    async with running_agent(fake, state_dir, labels={"arch": "amd64"}, capacity=3) as (agent, task):
        await serving(fake)
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0
    [registration] = fake.registrations
    assert registration.name == "test-agent"
    assert dict(registration.labels) == {"arch": "amd64"}
    assert list(registration.executors) == ["local"]
    assert registration.capacity == 3
    assert registration.version == "0.1.0"
    state_file = state_dir / "agent.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    saved = json.loads(state_file.read_text())
    assert saved["agent_id"] == "agent-1"
    assert saved["controller"] == fake.address
    assert fake.tokens[saved["agent_token"]] == "agent-1"
    # No temporary file left behind (agent.lock is the one-agent-per-state-dir lock).
    assert sorted(p.name for p in state_dir.iterdir()) == ["agent.json", "agent.lock"]

    # A restart reuses the stored identity: no second Register, same agent id and token.
    async with running_agent(fake, state_dir) as (agent, task):
        await serving(fake, 2)
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0
    assert len(fake.registrations) == 1
    assert [r.agent_id for r in fake.lease_requests] == ["agent-1", "agent-1"]
    assert fake.lease_metadata[-1] == f"Bearer {saved['agent_token']}"
    assert fake.heartbeats[-1].draining  # a drained agent says so


async def test_unknown_token_reregisters_once_with_the_registration_token(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (agent, task):
        await serving(fake)
        fake.forget_tokens()
        await fake.wait_for(lambda: len(fake.registrations) == 2, what="a second registration")
        await serving(fake, 2)
        assert fake.lease_requests[-1].agent_id == "agent-2"
        lease = fake.push_lease(spec("echo after re-registration"))
        await fake.wait_for(lambda: fake.final_update(lease))
        assert json.loads((tmp_path / "agent.json").read_text())["agent_id"] == "agent-2"
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0


async def test_unknown_token_without_registration_token_exits_1(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
    fake.forget_tokens()
    async with running_agent(fake, tmp_path, registration_token="") as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "does not accept the agent token" in refused.value.message
    assert "--registration-token" in refused.value.message


async def test_no_token_and_no_registration_token_is_bad_input(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path, registration_token="") as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 2
    assert fake.registrations == []


async def test_version_mismatch_is_refused_with_both_versions(fake: FakeController, tmp_path: Path) -> None:
    fake.accepted_versions = {"9.9.9"}
    async with running_agent(fake, tmp_path) as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "0.1.0" in refused.value.message and "refused agent version" in refused.value.message


async def test_registration_retries_server_errors_and_exits_on_a_refusal(
    fake: FakeController, tmp_path: Path
) -> None:
    # INTERNAL and UNKNOWN are a controller's unexpected errors: retried, like an unreachable one.
    fake.failures["Register"] = [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN]
    async with running_agent(fake, tmp_path / "a") as (agent, task):
        await serving(fake)
        agent.drain("test")
        assert await asyncio.wait_for(task, 10) == 0
    assert len(fake.registrations) == 3
    # PERMISSION_DENIED: this agent is not allowed; asking again cannot help.
    fake.failures["Register"] = [grpc.StatusCode.PERMISSION_DENIED]
    async with running_agent(fake, tmp_path / "b") as (_agent, task):
        with pytest.raises(AgentExit) as refused:
            await asyncio.wait_for(task, 10)
    assert refused.value.code == 1
    assert "registration with" in refused.value.message and "PERMISSION_DENIED" in refused.value.message
    assert len(fake.registrations) == 4
