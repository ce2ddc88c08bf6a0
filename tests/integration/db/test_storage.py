"""The storage layer on real databases: SQLite files and a real PostgreSQL (the `database_url` fixture).

Covers what the rest of the controller relies on: migrations that apply once (also when two
processes start at once), the default organization and tenant, every table round-tripping its
foreign keys, JSON and tz-aware timestamps, the unique rules, the cascades, and URL errors that
say what to write without echoing a password.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from controller.agents.tables import Agent
from controller.db import (
    AnyEngine,
    DatabaseUnavailable,
    bind,
    bound_engine,
    close_database,
    engine_from_url,
    is_unique_violation,
    migrate,
    open_database,
    write_transaction,
)
from controller.orgs.services import ensure_default_org_and_tenant
from controller.orgs.tables import Organization, Tenant
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run, StageRun
from controller.tables import APP_CONFIG

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "controller" / "db" / "migrations"


def _all_migration_ids() -> list[str]:
    ids = []
    for path in MIGRATIONS_DIR.glob("buildit_*.py"):
        for line in path.read_text().splitlines():
            if line.startswith("ID = "):
                ids.append(line.split('"')[1])
    return sorted(ids)


# --- migrations -----------------------------------------------------------------------------------


async def test_migrations_apply_to_an_empty_database_once(database_url: str) -> None:
    engine = engine_from_url(database_url)
    try:
        applied = await migrate(engine)
        assert applied == _all_migration_ids()
        assert len(applied) >= 2
        for table in APP_CONFIG.table_classes:
            assert await table.table_exists(), table._meta.tablename
        assert await migrate(engine) == []  # the second call is a no-op
    finally:
        await close_database(engine)


async def test_open_database_twice_is_idempotent(database_url: str) -> None:
    first = await open_database(database_url)
    await close_database(first)
    second = await open_database(database_url)
    try:
        assert await migrate(second) == []
        assert await Organization.count() == 0
    finally:
        await close_database(second)


_MIGRATE_IN_A_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from controller.db import close_database, engine_from_url, migrate

    async def main(url: str, start_at: float) -> None:
        engine = engine_from_url(url)
        time.sleep(max(0.0, start_at - time.time()))  # both processes race from the same instant
        try:
            print(json.dumps(await migrate(engine)))
        finally:
            await close_database(engine)

    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
    """
)


def test_concurrent_migrate_from_two_processes(database_url: str) -> None:
    start_at = f"{time.time() + 1.5}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_IN_A_PROCESS, database_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [process.communicate(timeout=60) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    applied = [json.loads(stdout) for stdout, _ in results]
    # One process applied everything, the other found nothing left to do.
    assert sorted(applied, key=len) == [[], _all_migration_ids()]


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    """Piccolo's auto migrations see no difference: no table change is missing its migration."""
    from piccolo.apps.migrations.commands.new import AutoMigrationManager

    bind(engine_from_url(f"sqlite:///{tmp_path}/diff.db"))
    statements = asyncio.run(AutoMigrationManager().get_alter_statements(APP_CONFIG))
    assert [s for group in statements for s in group.statements] == []


# --- organizations and tenants --------------------------------------------------------------------


async def test_ensure_default_org_and_tenant_is_idempotent(db: AnyEngine) -> None:
    first = await ensure_default_org_and_tenant()
    assert await ensure_default_org_and_tenant() == first
    # Concurrent callers (several controllers starting) agree on the same rows.
    together = await asyncio.gather(*(ensure_default_org_and_tenant() for _ in range(5)))
    assert set(together) == {first}
    assert await Organization.count() == 1
    assert await Tenant.count() == 1
    org = await Organization.objects().first()
    assert org is not None and org.slug == "default" and org.id == first[0]
    tenant = await Tenant.objects().first()
    assert tenant is not None and tenant.slug == "default" and tenant.org == first[0]


# --- round trips ----------------------------------------------------------------------------------


async def _scaffold() -> dict[str, Any]:
    """A default org and tenant, a pipeline, an agent and a run; returns their ids."""
    org_id, tenant_id = await ensure_default_org_and_tenant()
    pipeline = Pipeline(org=org_id, tenant=tenant_id, name="app", config='pipeline "app"')
    await pipeline.save()
    agent = Agent(
        org=org_id,
        tenant=tenant_id,
        name="agent-1",
        token_hash="ab" * 32,
        labels={"os": "linux", "arch": "amd64"},
        executors=["docker", "local"],
        capacity=2,
        version="0.1.0",
    )
    await agent.save()
    run = Run(
        org=org_id,
        tenant=tenant_id,
        pipeline=pipeline.id,
        number=1,
        branch="main",
        sha="f" * 40,
        commit_message='feat: it\'s "quoted" and ünïcode; $(echo no)',
        author="Ada <ada@example.com>",
        trigger="api",
    )
    await run.save()
    return {"org": org_id, "tenant": tenant_id, "pipeline": pipeline.id, "agent": agent.id, "run": run.id}


def _stage(ids: dict[str, Any], name: str, **values: Any) -> StageRun:
    return StageRun(
        org=ids["org"],
        tenant=ids["tenant"],
        run=ids["run"],
        name=name,
        index=values.pop("index", 0),
        status=values.pop("status", "pending"),
        executor=values.pop("executor", "docker"),
        **values,
    )


async def test_every_table_round_trips(db: AnyEngine) -> None:
    ids = await _scaffold()
    spec = {"image": "python:3.12", "commands": ["make", "make test"], "env": {"A": "1"}, "timeout": 600}
    deadline = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    leased = _stage(
        ids,
        "build",
        index=1,
        status="running",
        needs=["test", "lint"],
        spec=spec,
        labels={"os": "linux"},
        agent=ids["agent"],
        lease_id="lease-1",
        lease_deadline=deadline,
        exit_code=None,
        log_seq=2**40,
        log_size=2**41,
    )
    await leased.save()
    waiting = _stage(ids, "test")  # defaults: no agent, no lease, empty JSON
    await waiting.save()

    rows = {
        row["name"]: row
        for row in await StageRun.select().where(StageRun.run == ids["run"]).output(load_json=True)
    }
    build, test = rows["build"], rows["test"]
    assert build["needs"] == ["test", "lint"]
    assert build["spec"] == spec
    assert build["labels"] == {"os": "linux"}
    assert build["agent"] == ids["agent"] and isinstance(build["agent"], UUID)
    assert build["run"] == ids["run"] and build["tenant"] == ids["tenant"] and build["org"] == ids["org"]
    assert build["lease_id"] == "lease-1"
    assert build["lease_deadline"] == deadline  # the same instant ...
    assert build["lease_deadline"].utcoffset() == timedelta(0)  # ... returned in UTC
    assert (build["log_seq"], build["log_size"]) == (2**40, 2**41)
    assert (build["attempt"], build["infra_failures"], build["user_retries_used"]) == (1, 0, 0)
    assert test["agent"] is None and test["lease_id"] is None and test["lease_deadline"] is None
    assert test["exit_code"] is None and test["queued_at"] is None and test["finished_at"] is None
    assert test["needs"] == [] and test["spec"] == {} and test["labels"] == {} and test["message"] == ""

    # Filtering on a foreign key and on a lease id, as the scheduler does.
    by_lease = await StageRun.select(StageRun.name).where(StageRun.lease_id == "lease-1")
    assert by_lease == [{"name": "build"}]
    on_agent = await StageRun.count().where(StageRun.agent == ids["agent"])
    assert on_agent == 1

    run = await Run.objects().where(Run.id == ids["run"]).first()
    assert run is not None
    assert run.commit_message == 'feat: it\'s "quoted" and ünïcode; $(echo no)'
    assert (run.status, run.error, run.cancel_requested) == ("pending", "", False)
    # Piccolo types a nullable column's attribute as non-optional; the value is None all the same.
    assert cast("datetime | None", run.started_at) is None
    assert run.created_at.tzinfo is not None and run.created_at.utcoffset() == timedelta(0)

    agent = await Agent.objects().where(Agent.id == ids["agent"]).output(load_json=True).first()
    assert agent is not None
    # With load_json the JSON attributes hold Python values (Piccolo still types them as str).
    assert cast(object, agent.labels) == {"os": "linux", "arch": "amd64"}
    assert cast(object, agent.executors) == ["docker", "local"]
    assert (agent.status, agent.draining) == ("offline", False)
    assert cast("datetime | None", agent.last_seen) is None

    pipeline = await Pipeline.objects().where(Pipeline.id == ids["pipeline"]).first()
    assert pipeline is not None and pipeline.next_run_number == 0
    before = pipeline.updated_at
    await Pipeline.update({Pipeline.next_run_number: Pipeline.next_run_number + 1}).where(
        Pipeline.id == pipeline.id
    )
    after = await Pipeline.select(Pipeline.next_run_number, Pipeline.updated_at).where(
        Pipeline.id == pipeline.id
    )
    assert after[0]["next_run_number"] == 1
    assert after[0]["updated_at"] >= before and after[0]["updated_at"].tzinfo is not None


async def test_timestamps_are_timezone_aware_everywhere(db: AnyEngine) -> None:
    ids = await _scaffold()
    now = datetime.now(UTC)
    await _stage(ids, "s", queued_at=now, started_at=now, finished_at=now, timeout_deadline=now).save()
    for table in (Organization, Tenant, Pipeline, Agent, Run, StageRun):
        for row in await table.select():
            for column, value in row.items():
                if isinstance(value, datetime):
                    assert value.utcoffset() == timedelta(0), f"{table._meta.tablename}.{column}"
    stage = await StageRun.select(StageRun.queued_at).first()
    assert stage is not None and stage["queued_at"] == now


async def test_timestamps_compare_in_time_order(db: AnyEngine) -> None:
    """`lease_deadline < now` finds exactly the expired leases (SQLite compares the stored text)."""
    ids = await _scaffold()
    base = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    offsets = [-1.5, -1, -0.000001, 0, 0.000001, 0.5, 1, 3600]
    for i, seconds in enumerate(offsets):
        # Half of them given in another zone: the instant is what counts.
        deadline = base + timedelta(seconds=seconds)
        if i % 2:
            deadline = deadline.astimezone(timezone(timedelta(hours=-5)))
        await _stage(ids, f"s{i}", lease_deadline=deadline).save()
    expired = await StageRun.select(StageRun.name).where(StageRun.lease_deadline < base)
    assert sorted(row["name"] for row in expired) == ["s0", "s1", "s2"]
    latest = await StageRun.select(StageRun.name).order_by(StageRun.lease_deadline, ascending=False).first()
    assert latest == {"name": "s7"}


# --- rules ----------------------------------------------------------------------------------------


async def _raises_unique_violation(coroutine: Any) -> None:
    with pytest.raises(Exception) as info:
        await coroutine
    assert is_unique_violation(info.value), repr(info.value)


async def test_unique_rules_are_enforced(db: AnyEngine) -> None:
    ids = await _scaffold()
    org, tenant = ids["org"], ids["tenant"]

    await _raises_unique_violation(Pipeline(org=org, tenant=tenant, name="app", config="").save())
    other_tenant = Tenant(org=org, slug="other", name="Other")
    await other_tenant.save()
    await Pipeline(org=org, tenant=other_tenant.id, name="app", config="").save()  # another tenant: fine
    await _raises_unique_violation(Tenant(org=org, slug="other", name="Again").save())
    await _raises_unique_violation(Organization(slug="default", name="Again").save())

    await _raises_unique_violation(
        Run(
            org=org,
            tenant=tenant,
            pipeline=ids["pipeline"],
            number=1,
            branch="main",
            sha="0" * 40,
            commit_message="",
            author="",
            trigger="api",
        ).save()
    )
    await _stage(ids, "build").save()
    await _raises_unique_violation(_stage(ids, "build").save())

    def agent(name: str, token_hash: str) -> Agent:
        return Agent(org=org, tenant=tenant, name=name, token_hash=token_hash, capacity=1, version="0")

    await _raises_unique_violation(agent("agent-1", "cd" * 32).save())  # same name in the tenant
    await _raises_unique_violation(agent("agent-2", "ab" * 32).save())  # same token hash

    assert await Pipeline.count().where(Pipeline.tenant == tenant) == 1
    assert await StageRun.count() == 1
    assert not is_unique_violation(ValueError("UNIQUE constraint failed"))


async def test_foreign_keys_are_enforced(db: AnyEngine) -> None:
    ids = await _scaffold()
    with pytest.raises(Exception) as info:
        await Pipeline(org=ids["org"], tenant=uuid4(), name="orphan", config="").save()
    assert not is_unique_violation(info.value)
    assert await Pipeline.count() == 1


async def test_deletes_cascade_to_children_and_null_the_agent(db: AnyEngine) -> None:
    ids = await _scaffold()
    await _stage(ids, "a", agent=ids["agent"]).save()
    await _stage(ids, "b", agent=ids["agent"]).save()

    # An agent leaving the fleet keeps the history of what it ran.
    await Agent.delete().where(Agent.id == ids["agent"])
    assert await StageRun.count() == 2
    assert {row["agent"] for row in await StageRun.select(StageRun.agent)} == {None}

    # A run takes its stages along; a pipeline takes its runs (and their stages).
    second = Run(
        org=ids["org"],
        tenant=ids["tenant"],
        pipeline=ids["pipeline"],
        number=2,
        branch="main",
        sha="1" * 40,
        commit_message="",
        author="",
        trigger="push",
    )
    await second.save()
    await StageRun(
        org=ids["org"], tenant=ids["tenant"], run=second.id, name="a", index=0, executor="local"
    ).save()
    await Run.delete().where(Run.id == ids["run"])
    assert await StageRun.count() == 1
    await Pipeline.delete().where(Pipeline.id == ids["pipeline"])
    assert await Run.count() == 0
    assert await StageRun.count() == 0

    # The tenant and organization own everything else.
    await _scaffold()
    await Organization.delete().where(Organization.id == ids["org"])
    for table in (Tenant, Pipeline, Agent, Run, StageRun):
        assert await table.count() == 0, table._meta.tablename


async def test_write_transactions_serialise_read_modify_write(db: AnyEngine) -> None:
    """Concurrent read-then-write transactions neither fail ("database is locked") nor lose updates."""
    ids = await _scaffold()

    async def take_number() -> int:
        async with write_transaction():
            query = Pipeline.select(Pipeline.next_run_number).where(Pipeline.id == ids["pipeline"])
            if db.engine_type == "postgres":
                query = query.lock_rows()  # SQLite's IMMEDIATE transaction already excludes writers
            row = await query.first()
            assert row is not None
            number = row["next_run_number"] + 1
            await asyncio.sleep(0)  # let the others try to interleave
            await Pipeline.update({Pipeline.next_run_number: number}).where(Pipeline.id == ids["pipeline"])
            return int(number)

    numbers = await asyncio.gather(*(take_number() for _ in range(20)))
    assert sorted(numbers) == list(range(1, 21))


async def test_a_rolled_back_transaction_keeps_writes_made_outside_it_meanwhile(db: AnyEngine) -> None:
    """Other tasks' statements never join an open transaction (SQLite shares one connection).

    While one task's transaction is open and waiting, another task writes outside any transaction;
    the first then rolls back. Only the transaction's own row may disappear.
    """
    ids = await _scaffold()
    inside_open = asyncio.Event()
    outside_done = asyncio.Event()

    async def rolled_back() -> None:
        with pytest.raises(RuntimeError, match="roll back"):
            async with write_transaction():
                await _stage(ids, "inside", index=0).save()
                inside_open.set()
                await asyncio.sleep(0.05)  # the other task tries its write now
                raise RuntimeError("roll back")

    async def outside() -> None:
        await inside_open.wait()
        await _stage(ids, "outside", index=1).save()
        outside_done.set()

    await asyncio.gather(rolled_back(), outside())
    assert outside_done.is_set()
    names = await StageRun.select(StageRun.name).output(as_list=True)
    assert names == ["outside"]


async def test_many_concurrent_queries(db: AnyEngine) -> None:
    """Many queries in flight at once all complete (SQLite runs them in turn; PostgreSQL pools)."""
    ids = await _scaffold()

    async def write_and_read(i: int) -> int:
        await _stage(ids, f"s{i}", index=i).save()
        return int(await StageRun.count().where(StageRun.run == ids["run"]))

    counts = await asyncio.gather(*(write_and_read(i) for i in range(40)))
    assert max(counts) == 40
    assert await StageRun.count() == 40


_QUERY_AND_EXIT_WITHOUT_CLOSING = textwrap.dedent(
    """
    import asyncio, sys
    from controller.db import open_database
    from controller.orgs.services import ensure_default_org_and_tenant

    async def main(url: str) -> None:
        await open_database(url)
        print(await ensure_default_org_and_tenant())

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_process_that_never_closes_the_database_still_exits(tmp_path: Path) -> None:
    """A SQLite connection left open must not keep the interpreter from exiting."""
    url = f"sqlite:///{tmp_path}/buildit.db"
    result = subprocess.run(
        [sys.executable, "-c", _QUERY_AND_EXIT_WITHOUT_CLOSING, url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "UUID(" in result.stdout


async def test_close_database_closes_the_sqlite_connection_and_the_engine_still_works(tmp_path: Path) -> None:
    from controller.db.sqlite import InlineSQLiteEngine

    engine = await open_database(f"sqlite:///{tmp_path}/buildit.db")
    assert isinstance(engine, InlineSQLiteEngine)
    await asyncio.gather(*(Organization.count() for _ in range(10)))
    assert engine._connection is not None  # kept for the next queries
    await close_database(engine)
    assert engine._connection is None
    assert await Organization.count() == 0  # opens a new connection as needed
    await close_database(engine)


# --- URLs and engines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "buildit.db",
        "mysql://root:s3cret-pw@db/buildit",
        "sqlite://host/buildit.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?mode=ro",
        "postgresql://buildit:s3cret-pw@/buildit",
        "postgresql://buildit:s3cret-pw@db:notaport/buildit",
        "postgresql://buildit:s3cret-pw@db:5432",
        "postgres://buildit:s3cret@pw@db:5432/",
    ],
)
def test_a_bad_url_names_the_accepted_forms_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        engine_from_url(url)
    message = str(info.value)
    assert "sqlite:///" in message and "postgresql://user:password@host:port/database" in message
    assert "s3cret" not in message and "pw@" not in message


def test_sqlite_urls_take_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = engine_from_url("sqlite:///data/dir/buildit.db")
    assert relative.path == "data/dir/buildit.db"  # type: ignore[attr-defined]
    absolute = engine_from_url(f"sqlite:///{tmp_path}/abs/buildit.db")
    assert absolute.path == f"{tmp_path}/abs/buildit.db"  # type: ignore[attr-defined]
    for file in (tmp_path / "data/dir/buildit.db", tmp_path / "abs/buildit.db"):
        assert file.exists()  # parent directories made, file created ...
        connection = sqlite3.connect(file)
        try:  # ... and switched to WAL, so readers and the writer do not block each other
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            connection.close()


def test_postgres_urls_build_an_engine_without_connecting() -> None:
    started = time.monotonic()
    for url in ("postgresql://u:p@127.0.0.1:1/db", "postgres://u:p@127.0.0.1:1/db?sslmode=disable"):
        assert engine_from_url(url).engine_type == "postgres"
    assert time.monotonic() - started < 2


async def test_an_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        await open_database("postgresql://buildit:s3cret-pw@127.0.0.1:1/buildit")
    assert "127.0.0.1:1/buildit" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_piccolo_conf_hands_out_the_bound_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piccolo's own lookups (migrations, the CLI) see the engine BuildIt bound at run time ..."""
    from piccolo.engine import engine_finder

    monkeypatch.delenv("PICCOLO_CONF", raising=False)
    engine = engine_from_url(f"sqlite:///{tmp_path}/bound.db")
    bind(engine)
    assert bound_engine() is engine
    assert engine_finder() is engine
    assert StageRun._meta.db is engine
    # ... without telling the processes BuildIt starts (a Piccolo project's build has its own).
    assert "PICCOLO_CONF" not in os.environ

    monkeypatch.setenv("PICCOLO_CONF", "someone_elses.piccolo_conf")
    bind(engine)
    assert engine_finder() is engine
