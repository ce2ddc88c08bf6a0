"""The run operations: trigger, cancel, re-run, retry a stage — one implementation for every door.

REST handlers, gRPC methods, web UI actions (which post to REST) and CLI verbs (REST clients) are
thin adapters over `RunCommands`: they turn their request into a typed input, call one method and
render the typed result (`RunRecord`). Refusals are `controller.errors` kinds, mapped once per
transport. Whichever door a trigger comes through, a pipeline that belongs to a watched repository
takes the repository's path — the mirror is fetched, the exact commit is pinned and its
`.buildit.kdl` is read at that commit — and a stored pipeline is planned from its stored source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from uuid import UUID

from controller.audit import services as audit
from controller.auth.caller import Caller
from controller.errors import Conflict, Invalid, NotFound, Unprocessable
from controller.pipelines.services import find_pipeline
from controller.repos.services import branch_heads
from controller.runs import services
from controller.runs.services import RunRecord
from controller.scheduling.model import RunState
from controller.scheduling.planning import check_env
from controller.scheduling.scheduler import Scheduler
from controller.triggers.gitwork import default_branch

if TYPE_CHECKING:
    from controller.triggers.trigger_engine import TriggerEngine

#: Largest run number an API accepts (a 32-bit signed integer, as stored).
MAX_RUN_NUMBER = 2**31 - 1
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}\Z")


@dataclass(frozen=True)
class TriggerInput:
    """A request to start a run, as every door receives it.

    `target` names what to run: a pipeline or a watched repository, by id or by name. `branch`
    defaults to the repository's default branch (a stored pipeline: "main"); `sha` pins one commit
    (a watched repository needs the full 40 hex digits). `env` are extra variables for this run,
    visible to the pipeline as `${env.NAME}`. `message` and `author` describe the commit of a stored
    pipeline; a repository's commit describes itself.
    """

    target: str
    branch: str | None = None
    sha: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    author: str = ""
    #: How the run shows who started it: "api" (REST, gRPC, CLI) or "manual" (`buildit up --trigger`).
    source: str = "api"


@dataclass(frozen=True)
class Target:
    """What a trigger's `target` resolved to: a stored pipeline, or the repository that owns it."""

    pipeline_id: UUID
    repository_id: UUID | None
    #: The pipeline's name ("" when not looked up).
    pipeline_name: str = ""


class RunCommands:
    """See the module docstring. One instance per controller process (held by the app's deps)."""

    def __init__(
        self,
        scheduler: Scheduler,
        tenant: UUID,
        triggers: TriggerEngine | None = None,
        caller: Caller | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.tenant = tenant
        self.triggers = triggers
        #: Who asks (for the audit log); None for the controller's own actions (`buildit up`).
        self.caller = caller

    async def _audit(self, action: str, run: RunRecord, extra: str = "") -> None:
        if self.caller is not None:
            target = f"{run.pipeline_name} #{run.number}{extra}"
            await audit.record(action, target, caller=self.caller, tenant=self.tenant)

    # ------------------------------------------------------------------ finding runs

    async def get(self, run_id: UUID) -> RunRecord:
        """A run of this tenant by id; NotFound otherwise."""
        record = await self.find_by_id(run_id)
        if record is None:
            raise NotFound(f"run {run_id} not found")
        return record

    async def find_by_id(self, run_id: UUID) -> RunRecord | None:
        """A run of this tenant by id, or None."""
        record = await services.load_run(run_id)
        return record if record is not None and record.tenant == self.tenant else None

    async def find(self, pipeline_id: UUID, number: int) -> RunRecord:
        """Run `number` of a pipeline of this tenant; NotFound (naming which) otherwise."""
        await self.pipeline(pipeline_id)
        row = await services.find_run(pipeline_id, number) if 1 <= number <= MAX_RUN_NUMBER else None
        if row is None:
            raise NotFound(f"run {number} of pipeline {pipeline_id} not found")
        return await services.record_of(row)

    async def pipeline(self, pipeline_id: UUID) -> Target:
        """A pipeline of this tenant (and its repository, if watched); NotFound otherwise."""
        name = await self.scheduler.pipeline_name(pipeline_id)  # cached: on every trigger's path
        owner = await self.scheduler.pipeline_owner(pipeline_id) if name is not None else None
        if name is None or (owner is not None and owner[1] != self.tenant):
            raise NotFound(f"pipeline {pipeline_id} not found; list pipelines with GET /api/v1/pipelines")
        return Target(pipeline_id, self._repository_of(pipeline_id), name)

    def repository(self, repo_id: UUID) -> Target:
        """A watched repository of this tenant; NotFound otherwise."""
        repo = self.triggers.repository(repo_id, self.tenant) if self.triggers is not None else None
        if repo is None:
            raise NotFound(f"repository {repo_id} not found; list them with GET /api/v1/repos")
        return Target(repo.pipeline_id, repo.id)

    async def resolve(self, target: str) -> Target:
        """A trigger target: a repository (id or name), else a pipeline (id or name), of this tenant."""
        text = target.strip() if isinstance(target, str) else ""
        if not text:
            raise Invalid("name the repository or pipeline to run (its id or name)")
        if self.triggers is not None:
            for repo in self.triggers.repositories(self.tenant):
                if text in (str(repo.id), repo.name):
                    return Target(repo.pipeline_id, repo.id)
        row = await find_pipeline(self.tenant, text)
        if row is None:
            raise NotFound(f"no repository or pipeline named or with id {text!r}")
        pipeline_id = UUID(str(row["id"]))
        return Target(pipeline_id, self._repository_of(pipeline_id), str(row["name"]))

    def _repository_of(self, pipeline_id: UUID) -> UUID | None:
        return self.triggers.repository_of(pipeline_id) if self.triggers is not None else None

    # ------------------------------------------------------------------ operations

    async def trigger(self, request: TriggerInput, target: Target | None = None) -> RunRecord:
        """Start a run of `request.target` (or of an already resolved `target`)."""
        check_env(request.env)  # before any door's path: a bad variable refuses the trigger itself
        where = target if target is not None else await self.resolve(request.target)
        branch = request.branch.strip() if isinstance(request.branch, str) else request.branch
        if where.repository_id is not None and self.triggers is not None:
            sha = request.sha
            if sha is not None and not _FULL_SHA.match(sha):
                raise Invalid("'sha' must be a full 40-character hexadecimal commit id")
            run = await self.triggers.trigger(
                where.repository_id,
                branch or None,
                sha.lower() if sha else None,
                source=request.source,
                env=request.env,
            )
            if run is None:
                raise Unprocessable(
                    "that commit has no .buildit.kdl at the top of the repository: nothing to run"
                )
            record = await self.get(run.id)
            await self._audit("run.trigger", record)
            return record
        branch = branch if branch is not None else "main"
        run = await self.scheduler.trigger(
            where.pipeline_id,
            branch=branch,
            sha=request.sha or "",
            message=request.message,
            author=request.author,
            trigger=request.source,
            env=request.env,
        )
        record = services.record_of_new_run(
            run,
            branch=branch,
            sha=request.sha or "",
            message=request.message,
            author=request.author,
            trigger=request.source,
            pipeline_name=where.pipeline_name,
            tenant=self.tenant,
            agent_names=self._agent_names(run),
        )
        await self._audit("run.trigger", record)
        return record

    async def trigger_once(self, request: TriggerInput) -> tuple[RunRecord, bool]:
        """A run of `request.target` at its current commit, unless that commit has one already:
        then that run, and False. What `buildit up --trigger` does, so a restart with nothing
        changed starts nothing.

        A repository is caught up first (fetched, new heads run as the watch would run them), so
        a run the watch makes for a new commit counts. For a stored pipeline "the commit" is its
        stored file on the branch: an edited file runs again.
        """
        where = await self.resolve(request.target)
        branch = request.branch.strip() if isinstance(request.branch, str) else None
        if where.repository_id is not None and self.triggers is not None:
            await self.triggers.sync(where.repository_id, "start")
            heads = await branch_heads(where.repository_id)
            branch = branch or default_branch(heads)
            sha = request.sha or (heads.get(branch) if branch else None)
            if sha is None:
                return await self.trigger(request, where), True  # the trigger says what is missing
            earlier = await services.latest_run_at(where.pipeline_id, sha.lower())
            pinned = replace(request, branch=branch, sha=sha)
        else:
            branch = branch or "main"
            stored = await find_pipeline(self.tenant, str(where.pipeline_id))
            source = str(stored["config"]) if stored is not None else None
            earlier = await services.latest_run_at(where.pipeline_id, request.sha or "", branch, source)
            pinned = replace(request, branch=branch)
        if earlier is not None:
            return await services.record_of(earlier), False
        return await self.trigger(pinned, where), True

    def _agent_names(self, run: RunState) -> dict[UUID, str]:
        """Names of the agents a new run's stages were leased to at once (the scheduler knows them)."""
        names: dict[UUID, str] = {}
        for stage in run.stages.values():
            agent = self.scheduler.agent_by_id(stage.agent_id) if stage.agent_id else None
            if agent is not None:
                names[agent.id] = agent.name
        return names

    async def cancel(self, run: RunRecord, reason: str = "") -> RunRecord:
        """Cancel a run that has not finished; running stages are told to stop at once.

        `reason` (one line, at most 500 characters) becomes part of the cancelled stages' message.
        """
        if run.finished:
            raise Conflict(f"run {run.number} already finished ({run.status}); nothing to cancel")
        if len(reason) > 500 or any(c in reason for c in "\0\n\r"):
            raise Invalid("'reason' must be one line of at most 500 characters")
        await self.scheduler.cancel_run(run.id, reason.strip())
        await self._audit("run.cancel", run, f": {reason.strip()}" if reason.strip() else "")
        return await self.get(run.id)

    async def rerun(self, run: RunRecord) -> RunRecord:
        """A new run (next number) of a finished run: same pipeline file, branch, commit, env."""
        repo_id = self._repository_of(run.pipeline_id)
        # The mirror's URL as agents reach it now (the controller's address may have changed).
        repo_url = self.triggers.git_url(repo_id) if self.triggers is not None and repo_id else None
        new = await self.scheduler.rerun(run.id, repo_url=repo_url)
        record = await self.get(new.id)
        await self._audit("run.rerun", record, f" (of #{run.number})")
        return record

    async def retry_stage(self, run: RunRecord, stage: str) -> RunRecord:
        """Run a failed, timed-out, errored or cancelled stage again (attempt + 1) and what it blocked."""
        await self.scheduler.retry_stage(run.id, stage)
        await self._audit("stage.retry", run, f" stage {stage}")
        return await self.get(run.id)
