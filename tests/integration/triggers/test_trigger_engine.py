"""The trigger engine in-process, on real repositories and a real database (SQLite and PostgreSQL).

Cron schedules fire at most once a minute, so the one substitution here is the clock of the cron
loop (`next_cron` returns "in a moment"); everything else — watching, fetching, reading the file,
planning the run — is real.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.errors import Invalid
from controller.events import EventBus
from controller.git.mirror import MAX_PACKS
from controller.orgs.people import create_tenant
from controller.orgs.services import ensure_default_org_and_tenant
from controller.repos import services as repos
from controller.repos.services import RepoSettings
from controller.repos.tables import CommitTrigger
from controller.runs.tables import Run, StageRun
from controller.scheduling.db_store import PiccoloStore
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler
from controller.secrets.unlock import unlock
from controller.triggers import trigger_engine as engine_module
from controller.triggers.trigger_engine import TriggerEngine
from tests.integration.triggers.gitrepos import commit, make_repo

CRON_ONLY = 'pipeline "nightly"\ntrigger "cron" "0 3 * * *"\nstage "s" { run "true"; }\n'


@pytest.fixture
async def engine(db: Any, tmp_path: Path) -> AsyncIterator[TriggerEngine]:
    org, tenant = await ensure_default_org_and_tenant()
    scheduler = Scheduler(PiccoloStore(org, tenant), LogStore(tmp_path / "logs"), EventBus())
    await scheduler.start()
    box = await unlock(tmp_path, None)  # the master key, made in tmp_path as at a first start
    triggers = TriggerEngine(scheduler, org, tenant, tmp_path / "mirrors", box)
    triggers.git_base_url = "http://127.0.0.1:1/git"
    await triggers.start()
    try:
        yield triggers
    finally:
        await triggers.stop()
        await scheduler.stop()


async def _runs(pipeline_id: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await Run.select().where(Run.pipeline == pipeline_id).order_by(Run.number)
    return rows


async def _wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_cron_trigger_runs_the_default_branch_and_pushes_do_not(
    engine: TriggerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fired: list[str] = []

    def soon(expr: str, after: datetime) -> datetime:
        fired.append(expr)
        return after + timedelta(seconds=0.3) if len(fired) <= 2 else after + timedelta(days=1)

    monkeypatch.setattr(engine_module, "next_cron", soon)
    work = make_repo(tmp_path / "app", {".buildit.kdl": CRON_ONLY})
    repo = await engine.register(RepoSettings(url=str(work)))
    runs = await _wait(lambda: _runs(repo.pipeline_id))
    assert runs[0]["trigger"] == "cron" and runs[0]["branch"] == "main"
    assert fired[0] == "0 3 * * *"

    # The file has only a cron trigger: a push starts no run, and the trigger says why.
    sha = commit(work, {"x": "1"}, "a push")

    async def outcome() -> str | None:
        for row in await repos.recent_triggers(repo.id):
            if row["sha"] == sha and row["source"] == "watch" and row["status"] == "done":
                return str(row["outcome"])
        return None

    assert "do not include pushes to main" in await _wait(outcome)
    assert all(r["trigger"] == "cron" for r in await _runs(repo.pipeline_id))


async def test_unregistering_stops_watching_and_deletes_everything(
    engine: TriggerEngine, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "app", {".buildit.kdl": 'pipeline "p"\nstage "s" { run "true"; }\n'})
    repo = await engine.register(RepoSettings(url=str(work)))
    assert engine.mirror_path(repo.id).is_dir()
    assert await engine.unregister(repo.id)
    assert not engine.mirror_path(repo.id).exists()
    assert await repos.get_repository(None, repo.id, engine.box) is None
    commit(work, {"x": "1"}, "after removal")
    await asyncio.sleep(0.8)
    assert await Run.count() == 0
    assert not await engine.unregister(repo.id)


async def test_the_mirror_merges_its_packs_after_pushes_without_holding_up_their_runs(
    engine: TriggerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "MAINTAIN_DELAY_S", 2.0)
    work = make_repo(tmp_path / "app", {".buildit.kdl": 'pipeline "p"\nstage "s" { run "true"; }\n'})
    repo = await engine.register(RepoSettings(url=str(work)))
    packs = engine.mirror_path(repo.id) / "objects" / "pack"
    for index in range(12):  # each fetch adds a pack to the mirror
        commit(work, {"n": str(index)}, f"change {index}")
        await engine.sync(repo.id, "watch")
    assert len(await _runs(repo.pipeline_id)) == 12
    assert len(list(packs.glob("*.pack"))) > MAX_PACKS  # not merged on the runs' path
    await _wait(lambda: _fewer_packs(packs, 2))  # ... but soon after


async def _fewer_packs(folder: Path, limit: int) -> bool:
    return len(list(folder.glob("*.pack"))) <= limit


async def test_a_commit_that_fails_unexpectedly_does_not_block_the_ones_after_it(
    engine: TriggerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one substitution: the scheduler fails once with an error nobody expected (as a
    # RecursionError from a pathological file once did). Before, that trigger stayed pending and
    # every later commit of the repository queued behind it, never run, while the repository said ok.
    work = make_repo(tmp_path / "app", {".buildit.kdl": 'pipeline "app"\nstage "s" { run "true"; }\n'})
    repo = await engine.register(RepoSettings(url=str(work)))
    real_trigger = engine.scheduler.trigger
    failures: list[str] = []

    async def fail_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(kwargs["sha"])
            raise RuntimeError("something nobody expected")
        return await real_trigger(*args, **kwargs)

    monkeypatch.setattr(engine.scheduler, "trigger", fail_once)
    broken = commit(work, {"a.txt": "1"}, "first push")
    await _wait(lambda: _finished_trigger(repo.id, broken))
    assert failures == [broken]
    outcome = await _finished_trigger(repo.id, broken)
    assert "internal error (RuntimeError)" in outcome and "controller log" in outcome
    fine = commit(work, {"a.txt": "2"}, "second push")
    runs = await _wait(lambda: _runs(repo.pipeline_id))
    assert [r["sha"] for r in runs] == [fine]


async def _finished_trigger(repo_id: Any, sha: str) -> str | None:
    for row in await repos.recent_triggers(repo_id):
        if row["sha"] == sha and row["outcome"]:
            return str(row["outcome"])
    return None


async def test_a_repository_of_another_tenant_is_watched_and_runs_there(
    engine: TriggerEngine, tmp_path: Path
) -> None:
    default_org, default_tenant = engine.default_owner
    blue = (await create_tenant(default_org, "blue")).id
    work = make_repo(tmp_path / "app", {".buildit.kdl": 'pipeline "app"\nstage "s" { run "true"; }\n'})
    repo = await engine.register(RepoSettings(url=str(work)), owner=(default_org, blue))
    assert (repo.org, repo.tenant) == (default_org, blue)
    sha = commit(work, {"a.txt": "1"}, "a push")
    [run] = await _wait(lambda: _runs(repo.pipeline_id))
    assert (run["sha"], run["tenant"]) == (sha, blue)
    stage = await StageRun.select(StageRun.tenant).where(StageRun.run == run["id"]).first()
    assert stage is not None and stage["tenant"] == blue  # only agents serving blue take it
    triggers = await CommitTrigger.select(CommitTrigger.tenant).where(CommitTrigger.repository == repo.id)
    assert {t["tenant"] for t in triggers} == {blue}

    # Looked up for a caller, it belongs to blue only; a webhook (no tenant) finds it.
    assert engine.repository(repo.id, default_tenant) is None
    assert engine.repository(repo.id, blue) is repo and engine.repository(repo.id) is repo
    assert engine.repositories(default_tenant) == [] and engine.repositories(blue) == [repo]
    assert engine.repository_of(repo.pipeline_id) == repo.id
    # A restarted engine watches every tenant's repositories.
    await engine.stop()
    await engine.start()
    assert [r.id for r in engine.repositories(blue)] == [repo.id]
    # Another tenant cannot unregister it; its own can.
    assert not await engine.unregister(repo.id, default_tenant)
    assert engine.repository(repo.id) is not None and engine.mirror_path(repo.id).is_dir()
    assert await engine.unregister(repo.id, blue)
    assert engine.repository_of(repo.pipeline_id) is None


async def test_a_failed_first_fetch_of_a_remote_says_the_same_whatever_the_cause(
    engine: TriggerEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://alice:s3cr3t@127.0.0.1:{port}/x.git"
    with (
        caplog.at_level(logging.WARNING, logger="controller.triggers.trigger_engine"),
        pytest.raises(Invalid) as refused,
    ):
        await engine.register(RepoSettings(url=url))
    assert refused.value.message == (
        f"could not fetch http://***@127.0.0.1:{port}/x.git: check the URL and credentials"
    )
    logged = caplog.text
    assert "Connection refused" in logged and "s3cr3t" not in logged  # the cause, for the operator
    assert await repos.list_repositories(None, engine.box) == []
    assert [p.name for p in (tmp_path / "mirrors").iterdir()] == []  # nothing kept
