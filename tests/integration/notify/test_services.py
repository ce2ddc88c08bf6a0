"""controller.notify.services on real databases: sealed at rest, re-sealed by a key rotation, and
the deliveries a finished run makes (once per finish, the most specific event each wants)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.notify import services
from controller.notify.tables import Notification, NotificationDelivery
from controller.orgs.services import ensure_default_org_and_tenant
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run
from controller.secrets.rotation import rotate
from controller.secrets.unlock import unlock
from tests.integration.secrets.rows import everything_stored

URL = "https://hooks.example.com/services/T000/B000/PathIsTheCredential"
SECRET = "a-signing-secret-of-some-length"


async def _run(org: Any, tenant: Any, pipeline: Any, number: int, status: str, branch: str = "main") -> Any:
    run_id = uuid.uuid4()
    at = datetime.now(UTC) + timedelta(seconds=number)
    await Run.insert(
        Run(
            id=run_id,
            org=org,
            tenant=tenant,
            pipeline=pipeline,
            number=number,
            status=status,
            branch=branch,
            sha="ab" * 20,
            commit_message="fix <everything> & more",
            author="ada",
            trigger="api",
            created_at=at,
            started_at=at,
            finished_at=at,
        )
    )
    return run_id


async def test_url_and_secret_are_sealed_and_a_rotation_reseals_them(
    db: Any, tmp_path: Path, database_url: str
) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    box = await unlock(tmp_path, None)
    made = await services.create_notification(
        box, org, tenant, None, "slack", URL, "slack", ("failed",), SECRET, "ada"
    )
    assert (made.url, made.secret, made.url_hint) == (URL, SECRET, "https://hooks.example.com/…")
    assert SECRET not in repr(made) and URL not in repr(made)
    if database_url.startswith("sqlite"):  # the file as a thief would read it (the PostgreSQL case
        stored = everything_stored(database_url)  # needs the controller stopped; SQLite is a file)
        assert SECRET not in stored and "PathIsTheCredential" not in stored
    done = await rotate(tmp_path, None)
    assert done.resealed == 2
    rotated = await unlock(tmp_path, None)
    again = await services.get_notification(tenant, made.id, rotated)
    assert again is not None and (again.url, again.secret) == (URL, SECRET)


async def test_a_finished_run_makes_one_delivery_per_notification_as_its_most_specific_event(
    db: Any, tmp_path: Path
) -> None:
    org, tenant = await ensure_default_org_and_tenant()
    box = await unlock(tmp_path, None)
    pipeline = uuid.uuid4()
    await Pipeline.insert(Pipeline(id=pipeline, org=org, tenant=tenant, name="app", config=""))
    every = await services.create_notification(
        box, org, tenant, pipeline, "every", URL, "json", ("fixed", "failed", "finished"), SECRET, "ada"
    )
    broken = await services.create_notification(
        box, org, tenant, None, "broken", URL, "slack", ("failed",), SECRET, "ada"
    )
    base = "http://ci.example"
    statuses = ["failed", "cancelled", "succeeded", "succeeded", "error"]
    runs = [await _run(org, tenant, pipeline, n, s) for n, s in enumerate(statuses, start=1)]
    # Another branch's failure does not make main's next success "fixed".
    other = await _run(org, tenant, pipeline, 6, "failed", branch="feature")
    for run_id in [*runs, other]:
        await services.enqueue_for_run(run_id, tenant, pipeline, base)
        assert await services.enqueue_for_run(run_id, tenant, pipeline, base) == 0  # once per finish
    rows = await NotificationDelivery.select().order_by(NotificationDelivery.created_at)
    by_run = {r: n for n, r in enumerate([*runs, other], start=1)}
    every_events = [(by_run[r["run"]], r["event"]) for r in rows if r["notification"] == every.id]
    assert sorted(every_events) == [
        (1, "failed"),
        (2, "finished"),  # cancelled
        (3, "fixed"),  # the cancelled run in between says nothing
        (4, "finished"),
        (5, "failed"),
        (6, "failed"),
    ]
    broken_runs = sorted(by_run[r["run"]] for r in rows if r["notification"] == broken.id)
    assert broken_runs == [1, 5, 6]
    slack = json.loads(next(r["body"] for r in rows if r["notification"] == broken.id))
    assert "fix &lt;everything&gt; &amp; more" in slack["text"]
    document = json.loads(
        next(r["body"] for r in rows if r["notification"] == every.id and r["event"] == "fixed")
    )
    assert document["run"]["url"] == f"{base}/pipelines/{pipeline}/runs/3"
    assert document["previous_status"] == "failed"
    # A notification made after a run finished does not tell about it.
    late = await services.create_notification(
        box, org, tenant, None, "late", URL, "json", ("finished",), SECRET, "x"
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    await Notification.update({Notification.created_at: later}).where(Notification.id == late.id)
    assert await services.enqueue_for_run(runs[0], tenant, pipeline, base) == 0
    assert not await NotificationDelivery.select().where(NotificationDelivery.notification == late.id)
