"""What a local stage can reach of its agent: no credentials in its environment, no state dir above it.

Real agent (in the test's event loop) against the fake controller; real `sh` stages on this host.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from agent.contract.types import StageStatus, WorkspaceSource
from agent.executors.registry import build_executors
from agent.git.fetch import cache_dir_for
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.git_server import GitHttpServer, Upstream, git
from tests.integration.agent.harness import running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)

ENROL = "enrol-Qx81-secret"


async def test_a_local_stage_inherits_no_agent_credentials(
    fake: FakeController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.registration_token = ENROL
    monkeypatch.setenv("BUILDIT_REGISTRATION_TOKEN", ENROL)
    monkeypatch.setenv("BUILDIT_DATABASE_URL", "postgresql://buildit:db-password@db/buildit")
    monkeypatch.setenv("BUILDIT_AGENT_TLS_KEY", "/etc/buildit/agent.key")
    monkeypatch.setenv("COPY_OF_THE_TOKEN", f"Bearer {ENROL}")
    monkeypatch.setenv("KEEP_ME", "ordinary")
    async with running_agent(fake, tmp_path / "state", registration_token=ENROL) as (_agent, _task):
        await serving(fake)
        [token] = fake.tokens
        monkeypatch.setenv("HOLDS_THE_AGENT_TOKEN", token)
        lease = fake.push_lease(spec("env | sort", env={"BUILDIT_STAGE_VAR": "from the pipeline"}))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED
    env = dict(line.partition("=")[::2] for line in fake.lines(lease)[1:] if "=" in line)
    assert env["KEEP_ME"] == "ordinary"
    assert env["BUILDIT_STAGE_VAR"] == "from the pipeline"  # what the stage is given, it gets
    leaked = {name for name in env if name.startswith("BUILDIT_") and name != "BUILDIT_STAGE_VAR"}
    assert leaked <= {"BUILDIT_STAGE"}, leaked  # only the agent's marker of the stage, no setting
    for name in ("COPY_OF_THE_TOKEN", "HOLDS_THE_AGENT_TOKEN"):
        assert name not in env
    assert not any(ENROL in line or token in line for line in fake.lines(lease))


async def test_the_state_dir_is_private_and_not_above_any_workspace(
    fake: FakeController, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # an operator made it with the usual umask
    async with running_agent(fake, state) as (agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("pwd"))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
        work = agent.settings.work_root
    workspace = Path(fake.lines(lease)[1])
    assert state.resolve() not in workspace.parents
    assert workspace.is_relative_to(work.resolve())
    assert not work.resolve().is_relative_to(state.resolve())
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("agent.json", "agent.lock"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in state.iterdir()) == ["agent.json", "agent.lock"]


async def test_an_old_state_dir_layout_is_tidied_up(fake: FakeController, tmp_path: Path) -> None:
    state = tmp_path / "state"
    for old in ("work/lease-1", "git-cache/abc.git/objects", "git-home"):
        (state / old).mkdir(parents=True)
    async with running_agent(fake, state) as (_agent, _task):
        await serving(fake)
    assert sorted(p.name for p in state.iterdir()) == ["agent.json", "agent.lock"]


# --- the Git cache ------------------------------------------------------------------------------

# Overwrites the start of every object file the stage can reach: its own repository's, and those of
# any object directory the repository borrows from (objects/info/alternates).
POISON = (
    "for d in .git/objects $(cat .git/objects/info/alternates 2>/dev/null); do "
    "find $d -type f | while read f; do printf garbage | dd of=$f conv=notrunc 2>/dev/null; done; "
    "done; true"
)


@pytest.mark.docker
async def test_a_container_stage_cannot_poison_the_git_cache_for_later_builds(
    fake: FakeController,
    tmp_path: Path,
    upstream: Upstream,
    git_server: GitHttpServer,
    docker_image: str,
) -> None:
    sha = upstream.commit("app.txt", "v1")
    source = WorkspaceSource(git_server.url("project.git"), sha)
    executors = build_executors("docker", network="none")
    try:
        async with running_agent(fake, tmp_path / "state", executors=executors) as (agent, _task):
            await serving(fake)
            first = fake.push_lease(spec(POISON, "git log --oneline", image=docker_image, source=source))
            await fake.wait_for(lambda: fake.final_update(first), timeout=60)
            later = fake.push_lease(spec("git fsck --no-dangling && cat app.txt", source=source))
            await fake.wait_for(lambda: fake.final_update(later), timeout=60)
            cache = cache_dir_for(agent.settings.work_root, source.repo_url)
    finally:
        await executors.close()
    final = fake.final_update(later)
    assert final is not None and final.status is StageStatus.SUCCEEDED, fake.lines(later)
    assert fake.lines(later)[-1] == "v1"
    assert git(tmp_path, "--git-dir", str(cache), "fsck", "--no-dangling") == ""


# --- stages run as another user -------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
async def test_stages_run_as_another_user_reach_neither_the_token_nor_the_git_cache(
    fake: FakeController, upstream: Upstream, git_server: GitHttpServer
) -> None:
    sha = upstream.commit("app.txt", "v1")
    # Not under pytest's tmp dir (0700 root): the user must be able to walk to its workspace.
    base = Path(tempfile.mkdtemp(prefix="buildit-run-as-"))
    os.chmod(base, 0o711)
    state, work = base / "state", base / "work"
    executors = build_executors("local", run_as="nobody")
    try:
        async with running_agent(fake, state, executors=executors, work_dir=work, run_as="nobody") as (
            _a,
            _t,
        ):
            await serving(fake)
            lease = fake.push_lease(
                spec(
                    "id -un",
                    "touch mine && stat -c %U mine app.txt",
                    f"cat {state}/agent.json >/dev/null 2>&1 || echo no token",
                    f"ls {work}/git-cache >/dev/null 2>&1 || echo no cache",
                    "git log --format=%s && test ! -e .git/objects/info/alternates && echo own objects",
                    "echo $HOME",
                    source=WorkspaceSource(git_server.url("project.git"), sha),
                )
            )
            await fake.wait_for(lambda: fake.final_update(lease), timeout=60)
    finally:
        await executors.close()
        shutil.rmtree(base, ignore_errors=True)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, fake.lines(lease)
    output = [line for line in fake.lines(lease) if not line.startswith("$ ")][2:]  # after the checkout
    assert output == [
        "nobody",
        "nobody",
        "nobody",
        "no token",
        "no cache",
        "change app.txt",
        "own objects",
        "/nonexistent",
    ]
