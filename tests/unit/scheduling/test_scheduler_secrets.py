"""Secrets reach stages only inside leases: the scheduler on the in-memory store and secrets.

What is checked: a lease carries the values of exactly the secrets its stage uses, nothing the
scheduler stores (stage rows, in-memory state) holds a value, a restarted scheduler still fills
leases, and a secret that is missing (when the run is planned, or deleted before its stage is
leased) or unreadable ends the run or stage in `error` with a message that names it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.contract.types import StageStatus
from controller.scheduling.scheduler import Scheduler
from tests.unit.scheduling.harness import Harness

DEPLOY = """
pipeline "deploy"
env "AUTH" "Bearer ${secrets.API_TOKEN}"
stage "build" { run "echo build"; }
stage "deploy" needs="build" {
    env "TARGET" "prod"
    run "curl -H \\"$AUTH\\" https://example.invalid/${secrets.REGION}"
}
"""

SECRET_VALUES = {"API_TOKEN": "tok-5f3a9c", "REGION": "eu-west-7"}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(tmp_path).start()
    yield h
    await h.close()


def _values_in(obj: object) -> list[str]:
    text = repr(vars(obj)) if hasattr(obj, "__dict__") else repr(obj)
    return [value for value in SECRET_VALUES.values() if value in text]


async def test_a_lease_carries_the_values_of_the_secrets_its_stage_uses_and_nothing_stored_does(
    harness: Harness,
) -> None:
    for name, value in SECRET_VALUES.items():
        harness.secrets.set(name, value)
    pipeline = harness.store.add_pipeline(DEPLOY)
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)

    build = await harness.lease(agent)
    # The pipeline-level env carries a secret, so every stage gets AUTH (as `buildit run` does), and
    # the bare value too (it is only part of AUTH's), so the agent masks it on its own as well.
    assert build.spec.secrets == {"AUTH": "Bearer tok-5f3a9c", "BUILDIT_SECRET_API_TOKEN": "tok-5f3a9c"}
    await harness.run_stage(agent, build)
    deploy = await harness.lease(agent)
    assert deploy.spec.secrets == {
        "AUTH": "Bearer tok-5f3a9c",
        "BUILDIT_SECRET_API_TOKEN": "tok-5f3a9c",
        "BUILDIT_SECRET_REGION": "eu-west-7",
    }
    assert (
        "eu-west-7" not in deploy.spec.commands[0] and "${BUILDIT_SECRET_REGION}" in deploy.spec.commands[0]
    )
    assert deploy.spec.env["TARGET"] == "prod" and "AUTH" not in deploy.spec.env
    # No value in a repr of the lease, in the scheduler's state or in what the store keeps.
    assert _values_in(deploy) == [] and "tok-5f3a9c" not in repr(deploy.spec)
    for name in ("build", "deploy"):
        assert run.stages[name].spec.secrets == {}
        assert _values_in(run.stages[name]) == []
        assert _values_in(harness.store.stored_stage(run.stages[name].id)) == []
    assert harness.secrets.reveals == 2  # once per lease, never at trigger time
    await harness.run_stage(agent, deploy)
    assert harness.store.stored_run(run.id).status is StageStatus.SUCCEEDED


async def test_a_pipeline_scoped_secret_wins_over_a_tenant_wide_one(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline('pipeline "p"\nstage "s" { run "echo ${secrets.API_TOKEN}"; }\n')
    other = harness.store.add_pipeline('pipeline "q"\nstage "s" { run "echo ${secrets.API_TOKEN}"; }\n')
    harness.secrets.set("API_TOKEN", "tenant-value")
    harness.secrets.set("API_TOKEN", "pipeline-value", pipeline=pipeline)
    agent = await harness.agent("one")
    await harness.scheduler.trigger(pipeline)
    assert (await harness.lease(agent)).spec.secrets == {"BUILDIT_SECRET_API_TOKEN": "pipeline-value"}
    await harness.scheduler.trigger(other)
    agent2 = await harness.agent("two")
    assert (await harness.lease(agent2)).spec.secrets == {"BUILDIT_SECRET_API_TOKEN": "tenant-value"}


async def test_a_secret_that_is_not_set_makes_the_run_an_error_naming_it_and_how_to_set_it(
    harness: Harness,
) -> None:
    harness.secrets.set("API_TOKEN", "x")
    pipeline = harness.store.add_pipeline(DEPLOY)
    run = await harness.scheduler.trigger(pipeline)
    assert run.status is StageStatus.ERROR
    assert "stage 'deploy' uses secret 'REGION', which was not provided" in run.error
    assert "buildit secret set REGION" in run.error
    assert "API_TOKEN" not in run.error  # the one that is set is not mentioned
    assert harness.secrets.reveals == 0


async def test_a_stage_skipped_by_when_needs_no_secret(harness: Harness) -> None:
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nstage "build" { run "echo"; }\n'
        'stage "ship" { when branch="release"; run "echo ${secrets.SHIP}"; }\n'
    )
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline, branch="main")
    assert run.status is not StageStatus.ERROR
    await harness.run_stage(agent, await harness.lease(agent))
    assert harness.statuses(run.id) == {"build": StageStatus.SUCCEEDED, "ship": StageStatus.SKIPPED}


async def test_a_secret_deleted_before_its_stage_is_leased_ends_that_stage_in_error(harness: Harness) -> None:
    for name, value in SECRET_VALUES.items():
        harness.secrets.set(name, value)
    pipeline = harness.store.add_pipeline(DEPLOY)
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    build = await harness.lease(agent)
    harness.secrets.delete("REGION")
    await harness.run_stage(agent, build)
    stored = harness.store.stored_run(run.id)
    assert stored.status is StageStatus.ERROR
    deploy = stored.stages["deploy"]
    assert deploy.status is StageStatus.ERROR and deploy.lease_id is None
    assert "secret 'REGION' is not set" in deploy.message and "buildit secret set REGION" in deploy.message
    assert harness.pending_events(agent) == 0  # no lease went out


async def test_an_unreadable_secret_ends_the_stage_in_error_and_the_agent_takes_the_next_one(
    harness: Harness,
) -> None:
    harness.secrets.set("BROKEN", "x")
    harness.secrets.unreadable.add("BROKEN")
    pipeline = harness.store.add_pipeline(
        'pipeline "p"\nstage "a" { run "echo ${secrets.BROKEN}"; }\nstage "b" { run "echo fine"; }\n'
    )
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(agent)
    assert lease.spec.name == "b"
    a = harness.store.stored_stage(run.stages["a"].id)
    assert a.status is StageStatus.ERROR
    assert "secret 'BROKEN' cannot be decrypted" in a.message


async def test_leases_made_after_a_restart_still_get_the_values(harness: Harness) -> None:
    for name, value in SECRET_VALUES.items():
        harness.secrets.set(name, value)
    pipeline = harness.store.add_pipeline(DEPLOY)
    run = await harness.scheduler.trigger(pipeline)  # no agent yet: the stage stays queued
    await harness.scheduler.stop()

    again = Scheduler(
        harness.store, harness.scheduler.logs, harness.events, clock=harness.clock, secrets=harness.secrets
    )
    harness.scheduler = again
    await again.start()
    agent = await harness.agent("late")
    build = await harness.lease(agent)
    assert build.run_id == str(run.id) and build.spec.secrets["AUTH"] == "Bearer tok-5f3a9c"
    await harness.run_stage(agent, build)
    assert (await harness.lease(agent)).spec.secrets["BUILDIT_SECRET_REGION"] == "eu-west-7"


async def test_a_retried_stage_is_leased_with_the_current_value(harness: Harness) -> None:
    harness.secrets.set("API_TOKEN", "first")
    pipeline = harness.store.add_pipeline('pipeline "p"\nstage "s" { run "echo ${secrets.API_TOKEN}"; }\n')
    agent = await harness.agent("one")
    run = await harness.scheduler.trigger(pipeline)
    lease = await harness.lease(agent)
    await harness.run_stage(agent, lease, StageStatus.FAILED, 1)
    harness.secrets.set("API_TOKEN", "rotated")
    await harness.scheduler.retry_stage(run.id, "s")
    assert (await harness.lease(agent)).spec.secrets == {"BUILDIT_SECRET_API_TOKEN": "rotated"}
