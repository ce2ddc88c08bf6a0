"""The pipeline operations every door adapts: edit, delete, and sync a file (`buildit up --pipelines`).

REST (`PUT`/`DELETE /api/v1/pipelines/{id}`), gRPC (`UpdatePipeline`, `DeletePipeline`), the web
UI (whose edit form and delete button call the REST API) and the CLI (a REST client, and
`buildit up` in process) call these and nothing else. Each one checks the caller's tenant (another
tenant's pipeline is NotFound), refuses bad input before changing anything, and records itself in
the audit log.

A watched repository's pipeline is defined by the `.buildit.kdl` its commits carry: editing it
here would be overwritten by the next push, so it is refused saying to push a commit; deleting it
is removing the repository (`controller.repos.commands.unregister`), which goes through
`remove_with_runs` too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from controller.artifacts import services as artifacts
from controller.artifacts.store import ArtifactStore
from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.errors import Conflict, NotFound
from controller.pipelines import services
from controller.runs import services as runs
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Edited:
    """What an edit did: the pipeline as it is now, and whether its file changed (a new version)."""

    row: dict[str, Any]
    changed: bool


@dataclass(frozen=True)
class Synced:
    """What syncing a file did: "created", "updated" or "unchanged", and the pipeline's name."""

    outcome: str
    name: str
    version: int


async def remove_with_runs(
    scheduler: Scheduler,
    logs: LogStore,
    store: ArtifactStore | None,
    pipeline_id: UUID,
    reason: str,
    delete_rows: Callable[[], Awaitable[bool]],
) -> int:
    """Delete a pipeline with its runs, their logs and their artifacts; returns how many runs went.

    In this order, so nothing is left half-deleted for anyone to see: the scheduler ends the
    pipeline's unfinished runs as cancelled with `reason` (agents stop those stages at once and
    write nothing more) and makes no new run of it; `delete_rows` deletes the rows (the pipeline's,
    or its repository's: runs, stages and artifact rows cascade); then the log files, and artifact
    content no other run points at. File work runs in a worker thread. Returns 0 without
    deleting files when `delete_rows` found nothing.
    """
    files = await runs.log_files_of(pipeline_id)
    contents = await artifacts.contents_of_runs(list(files))
    await scheduler.discard_pipeline(pipeline_id, reason)
    if not await delete_rows():
        return 0
    for run_id, stages in files.items():
        await asyncio.to_thread(logs.remove_run, run_id, stages)
    if store is not None and contents:
        unused = contents - await artifacts.referenced(contents)
        for sha256 in sorted(unused):
            await asyncio.to_thread(store.discard, sha256)
    return len(files)


class PipelineCommands:
    """The pipeline operations of one caller in its tenant (None: the controller itself, for
    `buildit up --pipelines`, acting in `tenant`)."""

    def __init__(
        self,
        scheduler: Scheduler,
        logs: LogStore,
        store: ArtifactStore | None,
        org: UUID,
        tenant: UUID,
        caller: Caller | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.logs = logs
        self.store = store
        self.org = org
        self.tenant = tenant
        self.caller = caller

    @property
    def _actor(self) -> str:
        return self.caller.name if self.caller is not None else ""

    async def _audit(self, action: str, target: str) -> None:
        await audit.record(action, target, caller=self.caller, org=self.org, tenant=self.tenant)

    async def find(self, name_or_id: str) -> dict[str, Any]:
        """A pipeline of this tenant by id or name; NotFound (saying how to list them) otherwise."""
        text = name_or_id.strip() if isinstance(name_or_id, str) else ""
        row = await services.find_pipeline(self.tenant, text) if text else None
        if row is None:
            raise NotFound(
                f"no pipeline named or with id {text!r}; list pipelines with GET /api/v1/pipelines"
            )
        return row

    async def get(self, pipeline_id: UUID) -> dict[str, Any]:
        """A pipeline of this tenant; NotFound otherwise."""
        row = await services.get_pipeline(self.tenant, pipeline_id)
        if row is None:
            raise NotFound(f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        return row

    async def create(self, config: object, name: str | None = None) -> dict[str, Any]:
        """Store a new pipeline (version 1); invalid KDL is refused with every diagnostic and nothing
        is stored; a taken name is AlreadyExists."""
        await services.check_config(config)
        assert isinstance(config, str)
        row = await services.create_pipeline(self.org, self.tenant, config, name, self._actor)
        await self._audit("pipeline.create", str(row["name"]))
        return row

    async def edit(self, row: dict[str, Any], config: object) -> Edited:
        """Replace a stored pipeline's file with `config` as its next version.

        Validated exactly as a new pipeline is (every diagnostic at FILE:LINE:COL; nothing changes
        on any refusal). The next run plans from the new file; runs already made keep theirs. The
        same file again changes nothing (no new version). The pipeline keeps its name, whatever
        the file's `pipeline` node says.
        """
        if row.get("repository"):
            raise Conflict(
                f"pipeline '{row['name']}' is defined by the .buildit.kdl of its watched repository: "
                "change that file and push a commit (each push runs the file at its commit)"
            )
        await services.check_config(config)
        assert isinstance(config, str)
        if config == row["config"]:
            return Edited(row, changed=False)
        pipeline_id = UUID(str(row["id"]))
        version = await services.replace_config(pipeline_id, config, created_by=self._actor)
        if not version:
            raise NotFound(f"pipeline {pipeline_id} was deleted meanwhile")
        await self.scheduler.pipeline_changed(pipeline_id)
        await self._audit("pipeline.update", f"{row['name']} (version {version})")
        return Edited(await self.get(pipeline_id), changed=True)

    async def delete(self, row: dict[str, Any]) -> int:
        """Delete a stored pipeline with its runs, logs and artifacts (running runs are cancelled
        first); returns how many runs went. A watched repository's pipeline goes with its
        repository only (Conflict saying so)."""
        if row.get("repository"):
            raise Conflict(
                f"pipeline '{row['name']}' belongs to a watched repository: remove the repository "
                f"instead (DELETE /api/v1/repos/{row['repository']}, or the Repositories page)"
            )
        pipeline_id = UUID(str(row["id"]))
        count = await remove_with_runs(
            self.scheduler,
            self.logs,
            self.store,
            pipeline_id,
            "the pipeline was deleted",
            lambda: services.delete_pipeline_row(self.tenant, pipeline_id),
        )
        await self._audit("pipeline.delete", f"{row['name']} ({pipeline_id}, {count} run(s))")
        return count

    async def sync_file(self, config: str) -> Synced:
        """Make the pipeline a file names (its `pipeline` node) hold that file: create it, update
        it when the file changed, or leave it. What `buildit up --pipelines` does for each file,
        so an edited example takes effect at the next start."""
        parsed = await services.check_config(config)
        row = await services.find_pipeline(self.tenant, parsed.name)
        if row is None:
            created = await self.create(config)
            return Synced("created", str(created["name"]), 1)
        edited = await self.edit(row, config)
        outcome = "updated" if edited.changed else "unchanged"
        return Synced(outcome, str(edited.row["name"]), int(edited.row.get("version") or 1))
