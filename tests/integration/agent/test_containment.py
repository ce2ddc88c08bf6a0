"""A stage dies with its agent: `kill -9` of a real agent process with a running stage.

The agent runs as a child process (`python -m agent.cli`) against the fake controller. Its stage
starts a daemon in its own session, a double-forked background process and a foreground one;
after the agent is killed, none of them may keep running (the stage would otherwise run twice
once the controller retries it elsewhere). Everything is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.executors.containment import namespace_prefix
from agent.runner import agent_key
from agent.settings import AgentSettings
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.harness import serving, spec
from tests.integration.agent.test_runner import agent_command, spawn
from tests.integration.processes import gone, kill_all, marker, running

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def agent_process(
    fake: FakeController, state: Path, *extra: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await spawn(*agent_command(fake, state, "--registration-token", "enrol", *extra))
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def kill_agent_during_its_stage(fake: FakeController, state: Path, *extra: str) -> tuple[str, str, str]:
    daemon, orphan, foreground = marker(), marker(), marker()
    async with agent_process(fake, state, *extra) as proc:
        await serving(fake)
        fake.push_lease(spec(f"setsid sleep {daemon} & (sleep {orphan} &); sleep {foreground}"))
        assert await running(daemon, orphan, foreground), "the stage never started"
        proc.kill()  # SIGKILL: the agent gets no chance to clean up
        await proc.wait()
    return daemon, orphan, foreground


@pytest.mark.skipif(
    namespace_prefix() is None, reason="no PID namespaces here (needs root or user namespaces)"
)
async def test_a_killed_agents_local_stage_dies_with_it(fake: FakeController, tmp_path: Path) -> None:
    started = await kill_agent_during_its_stage(fake, tmp_path / "state")
    try:
        for argument in started:
            assert await gone(argument), f"sleep {argument} outlived its agent"
    finally:
        kill_all(*started)


async def test_without_namespaces_a_killed_agents_stage_dies_with_it_too(
    fake: FakeController, tmp_path: Path
) -> None:
    # The daemon left the process group: the reaper finds it by the marker it inherited.
    started = await kill_agent_during_its_stage(fake, tmp_path / "state", "--containment", "process-group")
    try:
        for argument in started:
            assert await gone(argument), f"sleep {argument} outlived its agent"
    finally:
        kill_all(*started)


async def test_what_a_killed_agent_left_is_killed_when_it_starts_again(
    fake: FakeController, tmp_path: Path
) -> None:
    # A stage process of an earlier run of this agent (same state dir) that nothing killed: as if
    # its reaper had been killed too. Its marker names the agent; the next start finds it.
    state = tmp_path / "state"
    key = agent_key(AgentSettings(controller=fake.address, state_dir=state))
    leftover = marker()
    env = {"PATH": "/usr/bin:/bin", "BUILDIT_STAGE": f"{key}/0123456789ab/lease-old"}
    process = await asyncio.create_subprocess_exec("setsid", "sleep", leftover, env=env)
    try:
        assert await running(leftover)
        async with agent_process(fake, state):
            await serving(fake)
            assert await gone(leftover)
    finally:
        kill_all(leftover)
        await process.wait()


@pytest.mark.docker
async def test_a_killed_agents_container_stops_and_its_restart_removes_it(
    fake: FakeController, tmp_path: Path, docker_image: str
) -> None:
    import docker

    state = tmp_path / "state"
    key = agent_key(AgentSettings(controller=fake.address, state_dir=state))
    client = docker.from_env()
    filters = {"label": [f"buildit.agent={key}"]}
    foreground = marker()
    try:
        async with agent_process(fake, state, "--executor", "docker", "--network", "none") as proc:
            await serving(fake)
            lease = fake.push_lease(spec(f"sleep {foreground}", image=docker_image))
            assert await running(foreground, timeout=30), "the container never started"
            # all=True: the engine may not yet call it running when its first process already is
            [container] = client.api.containers(all=True, filters=filters)
            assert container["Labels"]["buildit.lease"] == lease
            proc.kill()
            await proc.wait()
        # Its stdin (the agent's attach connection) closed: the container stops by itself.
        assert await gone(foreground)
        async with agent_process(fake, state, "--executor", "docker", "--network", "none"):
            await serving(fake, 2)
            await fake.wait_for(lambda: not client.api.containers(all=True, filters=filters), timeout=10)
    finally:
        for leftover in client.api.containers(all=True, filters=filters):
            client.api.remove_container(leftover["Id"], force=True)
        client.close()
        kill_all(foreground)
