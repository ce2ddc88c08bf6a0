"""BuildItService: the gRPC API for integrations (trigger, inspect, watch, logs, cancel, retry,
re-run, agents, their drain and removal, stored pipelines: read, edit, delete)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from grpc import aio

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.types import StageStatus
from controller.agents.commands import remove_agent
from controller.agents.services import AgentView, list_agent_views, set_drain
from controller.audit import services as audit
from controller.db.columns import loaded
from controller.deps import Deps
from controller.errors import Forbidden, Invalid, NotFound, Unprocessable
from controller.events import Overflow
from controller.pipelines.commands import PipelineCommands
from controller.pipelines.parsing import parse
from controller.rpc.user_auth import current_caller
from controller.runs import listing
from controller.runs.commands import RunCommands, TriggerInput
from controller.runs.logread import LogPiece, LogReader
from controller.runs.services import RunRecord, record_of

MAX_PAGE = 200
LOG_CHUNK = 256 * 1024


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


# Runs made by a new commit (seen by the watcher, the poller, a webhook or the catch-up at start)
# are pushes; cron runs have no value of their own in v1 and stay UNSPECIFIED.
_TRIGGERS = {
    "api": pb.RUN_TRIGGER_API,
    "rerun": pb.RUN_TRIGGER_RERUN,
    "watch": pb.RUN_TRIGGER_PUSH,
    "poll": pb.RUN_TRIGGER_PUSH,
    "webhook": pb.RUN_TRIGGER_PUSH,
    "start": pb.RUN_TRIGGER_PUSH,
}
_AGENT_STATUSES = {
    "online": pb.AGENT_STATUS_ONLINE,
    "draining": pb.AGENT_STATUS_DRAINING,
    "offline": pb.AGENT_STATUS_OFFLINE,
}


def _agent_proto(v: AgentView) -> pb.Agent:
    return pb.Agent(
        id=str(v.id),
        name=v.name,
        status=_AGENT_STATUSES[v.status],
        labels=v.labels,
        executors=v.executors,
        capacity=v.capacity,
        running=v.running,
        last_seen=convert.timestamp_to_proto(v.last_seen),
        version=v.version,
        registered_at=convert.timestamp_to_proto(v.registered_at),
        drain_requested_by=v.drain_requested_by or "",
    )


def _run_proto(record: RunRecord) -> pb.Run:
    row = record.row
    return pb.Run(
        id=str(row["id"]),
        repository="",
        number=row["number"],
        pipeline=record.pipeline_name,
        status=convert.status_to_proto(StageStatus(row["status"])),
        ref=row["branch"],
        commit_sha=row["sha"],
        commit_message=row["commit_message"],
        author=row["author"],
        trigger=_TRIGGERS.get(row["trigger"], pb.RUN_TRIGGER_UNSPECIFIED),
        created_at=convert.timestamp_to_proto(row["created_at"]),
        started_at=convert.timestamp_to_proto(row["started_at"]),
        finished_at=convert.timestamp_to_proto(row["finished_at"]),
        message=row["error"],
        stages=[_stage_proto(s, record.agent_names) for s in record.stages],
        waiting_reason=row["waiting_reason"],
    )


def _pipeline_proto(row: dict[str, Any]) -> pb.Pipeline:
    return pb.Pipeline(
        id=str(row["id"]),
        name=row["name"],
        version=int(row.get("version") or 1),
        source=row["config"],
        repository_id=str(row["repository"]) if row.get("repository") else "",
        updated_at=convert.timestamp_to_proto(row.get("updated_at")),
    )


def _stage_proto(row: dict[str, Any], names: dict[Any, str]) -> pb.Stage:
    needs = row["needs"]
    stage = pb.Stage(
        id=str(row["id"]),
        name=row["name"],
        index=row["index"],
        status=convert.status_to_proto(StageStatus(row["status"])),
        attempt=row["attempt"],
        needs=loaded(needs),
        agent_id=str(row["agent"]) if row["agent"] else "",
        agent_name=names.get(row["agent"], "") if row["agent"] else "",
        message=row["message"],
        queued_at=convert.timestamp_to_proto(row["queued_at"]),
        started_at=convert.timestamp_to_proto(row["started_at"]),
        finished_at=convert.timestamp_to_proto(row["finished_at"]),
        log_size=row["log_size"],
        waiting_reason=row["waiting_reason"],
    )
    if row["exit_code"] is not None:
        stage.exit_code = row["exit_code"]
    return stage


class BuildItServicer(pb_grpc.BuildItServiceServicer):  # type: ignore[misc]
    """See the module docstring. Runs are addressed by their id (a UUID); each method adapts one
    operation (`controller.runs.commands`), and its refusals map to status codes in one place
    (`controller.rpc.errors`)."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    @property
    def deps(self) -> Deps:
        """The parts scoped to the calling key's tenant (set by the UserAuth guard around the call)."""
        caller = current_caller.get(None)
        if caller is None:
            raise Forbidden("no caller: the method was not checked by the policy point")
        return self._deps.scoped(caller)

    @property
    def commands(self) -> RunCommands:
        """The run operations of the caller's tenant."""
        return self.deps.runs

    async def _record(self, run_id: str) -> RunRecord:
        key = _uuid(run_id)
        record = await self.commands.find_by_id(key) if key is not None else None
        if record is None:
            raise NotFound(f"run {run_id!r} not found")
        return record

    async def _load_run(self, run_id: str) -> pb.Run:
        return _run_proto(await self._record(run_id))

    async def TriggerRun(
        self, request: pb.TriggerRunRequest, context: aio.ServicerContext
    ) -> pb.TriggerRunResponse:
        ref = request.ref.removeprefix("refs/heads/")
        record = await self.commands.trigger(
            TriggerInput(
                target=request.repository,
                branch=ref or None,
                sha=request.commit_sha or None,
                env=dict(request.env),
            )
        )
        return pb.TriggerRunResponse(run=_run_proto(record))

    async def GetRun(self, request: pb.GetRunRequest, context: aio.ServicerContext) -> pb.GetRunResponse:
        return pb.GetRunResponse(run=await self._load_run(request.run_id))

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: aio.ServicerContext
    ) -> pb.ListRunsResponse:
        size = request.page_size or 50
        if not 1 <= size <= MAX_PAGE:
            raise Invalid(f"page_size must be 1-{MAX_PAGE}")
        cutoff: datetime | None = None
        if request.page_token:
            try:
                before = float(request.page_token)
                if not math.isfinite(before):
                    raise ValueError(before)
                cutoff = datetime.fromtimestamp(before, UTC)
            except (ValueError, OverflowError, OSError):
                raise Invalid("page_token is not one this server gave out") from None
        target = await self.commands.resolve(request.repository) if request.repository else None
        rows = await listing.runs_before(
            self.deps.tenant,
            size,
            before=cutoff,
            pipeline=target.pipeline_id if target is not None else None,
            branch=request.ref,
            statuses=[convert.status_from_proto(s).value for s in request.statuses],
        )
        runs = [_run_proto(await record_of(r)) for r in rows]
        token = str(rows[-1]["created_at"].timestamp()) if len(rows) == size else ""
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        record = await self._record(request.run_id)
        async with self.deps.events.subscribe(record.id) as queue:
            snapshot = await self._load_run(request.run_id)
            yield pb.RunEvent(snapshot=snapshot)
            if snapshot.status in _FINISHED:
                return
            while True:
                event = await queue.get()
                if isinstance(event, Overflow) or event.kind == "run":
                    run = await self._load_run(request.run_id)
                    yield pb.RunEvent(run_updated=run)
                    if run.status in _FINISHED:
                        return
                elif event.kind == "stage":
                    run = await self._load_run(request.run_id)
                    for stage in run.stages:
                        if stage.name == event.subject.name:
                            yield pb.RunEvent(stage_updated=stage)

    async def StreamLogs(
        self, request: pb.StreamLogsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.StreamLogsResponse]:
        record = await self._record(request.run_id)
        stage = next((s for s in record.stages if s["name"] == request.stage), None)
        if stage is None:
            raise NotFound(f"run {request.run_id!r} has no stage {request.stage!r}")
        reader = LogReader(
            self.deps.scheduler,
            self.deps.logs,
            self.deps.events,
            record.id,
            request.stage,
            request.attempt or stage["attempt"],
            request.offset,
            follow=request.follow,
        )
        await reader.state()  # NOT_FOUND for an attempt that does not exist, before any message
        pending = b""  # bytes of a line not yet ended
        offset = request.offset
        async for item in reader.items():
            if isinstance(item, LogPiece):
                pending += item.data
                cut = pending.rfind(b"\n") + 1
                if cut == 0 and len(pending) < LOG_CHUNK:
                    continue  # wait for the end of the line
                cut = cut or len(pending)
            else:  # the end: whatever is left is the last line
                cut = len(pending)
                if not cut:
                    return
            lines, pending = pending[:cut], pending[cut:]
            offset += len(lines)
            texts = lines.decode("utf-8", "replace").splitlines()
            yield pb.StreamLogsResponse(lines=[pb.LogLine(text=t) for t in texts], next_offset=offset)

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: aio.ServicerContext
    ) -> pb.CancelRunResponse:
        record = await self.commands.cancel(await self._record(request.run_id), request.reason)
        return pb.CancelRunResponse(run=_run_proto(record))

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        agents = [
            _agent_proto(v)
            for v in await list_agent_views(self.deps.scheduler, self.deps.tenant)
            if not request.status or request.status == _AGENT_STATUSES[v.status]
        ]
        return pb.ListAgentsResponse(agents=agents)

    async def RetryStage(
        self, request: pb.RetryStageRequest, context: aio.ServicerContext
    ) -> pb.RetryStageResponse:
        record = await self.commands.retry_stage(await self._record(request.run_id), request.stage_name)
        return pb.RetryStageResponse(run=_run_proto(record))

    async def RerunRun(
        self, request: pb.RerunRunRequest, context: aio.ServicerContext
    ) -> pb.RerunRunResponse:
        record = await self.commands.rerun(await self._record(request.run_id))
        return pb.RerunRunResponse(run=_run_proto(record))

    async def DrainAgent(
        self, request: pb.DrainAgentRequest, context: aio.ServicerContext
    ) -> pb.DrainAgentResponse:
        key = _uuid(request.agent_id)
        if key is None:
            raise NotFound(f"agent {request.agent_id!r} not found")
        caller = current_caller.get()
        view = await set_drain(
            self.deps.scheduler, self.deps.tenant, key, request.drain, org_admin=caller.is_org_admin
        )
        await audit.record("agent.drain" if request.drain else "agent.resume", view.name, caller=caller)
        return pb.DrainAgentResponse(agent=_agent_proto(view))

    # -- pipelines and agents managed in the product ------------------------------------------

    def _pipelines(self) -> PipelineCommands:
        deps, caller = self.deps, current_caller.get()
        return PipelineCommands(deps.scheduler, deps.logs, deps.artifacts, deps.org, deps.tenant, caller)

    async def GetPipeline(
        self, request: pb.GetPipelineRequest, context: aio.ServicerContext
    ) -> pb.GetPipelineResponse:
        row = await self._pipelines().find(request.pipeline)
        return pb.GetPipelineResponse(pipeline=_pipeline_proto(row))

    async def UpdatePipeline(
        self, request: pb.UpdatePipelineRequest, context: aio.ServicerContext
    ) -> pb.UpdatePipelineResponse:
        commands = self._pipelines()
        row = await commands.find(request.pipeline)
        try:
            edited = await commands.edit(row, request.source)
        except Unprocessable as exc:
            # gRPC has no structured detail here: every diagnostic goes into the message.
            texts = [str(d["text"]) for d in exc.extra.get("diagnostics", ())]
            raise Unprocessable("\n".join([exc.message, *texts]), **exc.extra) from None
        return pb.UpdatePipelineResponse(pipeline=_pipeline_proto(edited.row), changed=edited.changed)

    async def DeletePipeline(
        self, request: pb.DeletePipelineRequest, context: aio.ServicerContext
    ) -> pb.DeletePipelineResponse:
        commands = self._pipelines()
        runs = await commands.delete(await commands.find(request.pipeline))
        return pb.DeletePipelineResponse(runs_deleted=runs)

    async def RemoveAgent(
        self, request: pb.RemoveAgentRequest, context: aio.ServicerContext
    ) -> pb.RemoveAgentResponse:
        key = _uuid(request.agent_id)
        if key is None:
            raise NotFound(f"agent {request.agent_id!r} not found")
        await remove_agent(self.deps.scheduler, self.deps.registry, current_caller.get(), key)
        return pb.RemoveAgentResponse()

    async def ValidatePipeline(
        self, request: pb.ValidatePipelineRequest, context: aio.ServicerContext
    ) -> pb.ValidatePipelineResponse:
        filename = request.filename or ".buildit.kdl"
        pipeline, diagnostics = await parse(request.source, filename)
        stages = [stage.name for stage in pipeline.stages] if pipeline is not None else []
        return pb.ValidatePipelineResponse(
            valid=not diagnostics,
            stages=stages,
            diagnostics=[
                pb.Diagnostic(
                    file=d.file,
                    line=d.line,
                    col=d.col,
                    severity=pb.SEVERITY_ERROR,
                    message=d.message,
                    hint=d.hint,
                )
                for d in diagnostics
            ],
        )


_FINISHED = {convert.status_to_proto(s) for s in StageStatus if s.finished}
