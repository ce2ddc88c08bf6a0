"""BuildItService: the gRPC API for integrations (trigger, inspect, watch, logs, cancel, retry,
re-run, agents and their drain)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from grpc import aio

from agent.contract import convert
from agent.contract._gen import buildit_pb2 as pb
from agent.contract._gen import buildit_pb2_grpc as pb_grpc
from agent.contract.types import StageStatus
from controller.agents.services import AgentView, list_agent_views, set_drain
from controller.agents.tables import Agent
from controller.db.columns import loaded
from controller.events import Overflow
from controller.pipeline.validate import load, validate
from controller.pipelines.tables import Pipeline
from controller.runs.tables import Run, StageRun
from controller.services import Services

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


def _run_proto(
    row: dict[str, Any], pipeline: str, stages: list[dict[str, Any]], names: dict[Any, str]
) -> pb.Run:
    return pb.Run(
        id=str(row["id"]),
        repository="",
        number=row["number"],
        pipeline=pipeline,
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
        stages=[_stage_proto(s, names) for s in stages],
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
    )
    if row["exit_code"] is not None:
        stage.exit_code = row["exit_code"]
    return stage


class BuildItServicer(pb_grpc.BuildItServiceServicer):  # type: ignore[misc]
    """See the module docstring. Runs are addressed by their id (a UUID)."""

    def __init__(self, services: Services) -> None:
        self.svc = services

    async def _load_run(self, run_id: str, context: aio.ServicerContext) -> pb.Run:
        key = _uuid(run_id)
        row = await Run.select().where(Run.id == key).first() if key else None
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"run {run_id!r} not found")
            raise AssertionError("unreachable")
        return await self._run_message(row)

    async def _run_message(self, row: dict[str, Any]) -> pb.Run:
        pipeline = await Pipeline.select(Pipeline.name).where(Pipeline.id == row["pipeline"]).first()
        stages = await StageRun.select().where(StageRun.run == row["id"]).order_by(StageRun.index)
        agent_ids = [s["agent"] for s in stages if s["agent"]]
        names: dict[Any, str] = {}
        if agent_ids:
            for agent in await Agent.select(Agent.id, Agent.name).where(Agent.id.is_in(agent_ids)):
                names[agent["id"]] = agent["name"]
        return _run_proto(row, pipeline["name"] if pipeline else "", stages, names)

    async def _pipeline_id(self, name_or_id: str) -> UUID | None:
        """`repository` names a pipeline (by id or name) until repositories arrive with Git triggers."""
        key = _uuid(name_or_id)
        query = Pipeline.select(Pipeline.id).where(Pipeline.tenant == self.svc.tenant)
        row = await (
            query.where(Pipeline.id == key) if key else query.where(Pipeline.name == name_or_id)
        ).first()
        return None if row is None else UUID(str(row["id"]))

    async def TriggerRun(
        self, request: pb.TriggerRunRequest, context: aio.ServicerContext
    ) -> pb.TriggerRunResponse:
        pipeline_id = await self._pipeline_id(request.repository)
        if pipeline_id is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"pipeline {request.repository!r} not found")
            raise AssertionError("unreachable")
        run = await self.svc.scheduler.trigger(
            pipeline_id, branch=request.ref or "main", sha=request.commit_sha, trigger="api"
        )
        return pb.TriggerRunResponse(run=await self._load_run(str(run.id), context))

    async def GetRun(self, request: pb.GetRunRequest, context: aio.ServicerContext) -> pb.GetRunResponse:
        return pb.GetRunResponse(run=await self._load_run(request.run_id, context))

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: aio.ServicerContext
    ) -> pb.ListRunsResponse:
        size = request.page_size or 50
        if not 1 <= size <= MAX_PAGE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be 1-{MAX_PAGE}")
        query = Run.select().where(Run.tenant == self.svc.tenant)
        if request.page_token:
            try:
                before = float(request.page_token)
                if not math.isfinite(before):
                    raise ValueError(before)
                cutoff = datetime.fromtimestamp(before, UTC)
            except (ValueError, OverflowError, OSError):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this server gave out"
                )
                raise
            query = query.where(Run.created_at < cutoff)
        if request.repository:
            pipeline_id = await self._pipeline_id(request.repository)
            if pipeline_id is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"pipeline {request.repository!r} not found")
            query = query.where(Run.pipeline == pipeline_id)
        if request.ref:
            query = query.where(Run.branch == request.ref)
        if request.statuses:
            query = query.where(
                Run.status.is_in([convert.status_from_proto(s).value for s in request.statuses])
            )
        rows = await query.order_by(Run.created_at, ascending=False).limit(size)
        runs = [await self._run_message(r) for r in rows]
        token = str(rows[-1]["created_at"].timestamp()) if len(rows) == size else ""
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        key = _uuid(request.run_id)
        async with self.svc.events.subscribe(key) as queue:
            snapshot = await self._load_run(request.run_id, context)
            yield pb.RunEvent(snapshot=snapshot)
            if snapshot.status in _FINISHED:
                return
            while True:
                event = await queue.get()
                if isinstance(event, Overflow) or event.kind == "run":
                    run = await self._load_run(request.run_id, context)
                    yield pb.RunEvent(run_updated=run)
                    if run.status in _FINISHED:
                        return
                elif event.kind == "stage":
                    run = await self._load_run(request.run_id, context)
                    for stage in run.stages:
                        if stage.name == event.subject.name:
                            yield pb.RunEvent(stage_updated=stage)

    async def StreamLogs(
        self, request: pb.StreamLogsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.StreamLogsResponse]:
        key = _uuid(request.run_id)
        stage = (
            await StageRun.select().where((StageRun.run == key) & (StageRun.name == request.stage)).first()
            if key
            else None
        )
        if stage is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"run {request.run_id!r} has no stage {request.stage!r}"
            )
            raise AssertionError("unreachable")
        attempt = request.attempt or stage["attempt"]
        path = self.svc.logs.find(stage["run"], stage["name"], attempt)
        offset = request.offset
        async with self.svc.events.subscribe(stage["run"]) as queue:
            while True:
                row = await StageRun.select().where(StageRun.id == stage["id"]).first()
                if row is None:  # the run was deleted while we streamed
                    return
                size = (
                    row["log_size"]
                    if attempt == row["attempt"]
                    else (path.stat().st_size if path.exists() else 0)
                )
                while offset < size:
                    data = await asyncio.to_thread(self.svc.logs.read, path, offset, size, LOG_CHUNK)
                    cut = data.rfind(b"\n") + 1 or len(data)
                    lines = data[:cut].decode("utf-8", "replace").splitlines()
                    offset += cut
                    yield pb.StreamLogsResponse(lines=[pb.LogLine(text=t) for t in lines], next_offset=offset)
                finished = StageStatus(row["status"]).finished or attempt != row["attempt"]
                if not request.follow or finished:
                    return
                await queue.get()

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: aio.ServicerContext
    ) -> pb.CancelRunResponse:
        run = await self._load_run(request.run_id, context)
        if run.status not in _FINISHED:
            await self.svc.scheduler.cancel_run(UUID(run.id))
        return pb.CancelRunResponse(run=await self._load_run(request.run_id, context))

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        agents = [
            _agent_proto(v)
            for v in await list_agent_views(self.svc.scheduler, self.svc.tenant)
            if not request.status or request.status == _AGENT_STATUSES[v.status]
        ]
        return pb.ListAgentsResponse(agents=agents)

    async def RetryStage(
        self, request: pb.RetryStageRequest, context: aio.ServicerContext
    ) -> pb.RetryStageResponse:
        await self._load_run(request.run_id, context)  # NOT_FOUND for unknown ids, as everywhere
        await self.svc.scheduler.retry_stage(UUID(request.run_id), request.stage_name)
        return pb.RetryStageResponse(run=await self._load_run(request.run_id, context))

    async def RerunRun(
        self, request: pb.RerunRunRequest, context: aio.ServicerContext
    ) -> pb.RerunRunResponse:
        old = await self._load_run(request.run_id, context)
        triggers = self.svc.triggers
        row = await Run.select(Run.pipeline).where(Run.id == UUID(old.id)).first()
        repo_id = triggers.repository_of(row["pipeline"]) if triggers is not None and row else None
        repo_url = triggers.git_url(repo_id) if triggers is not None and repo_id else None
        run = await self.svc.scheduler.rerun(UUID(old.id), repo_url=repo_url)
        return pb.RerunRunResponse(run=await self._load_run(str(run.id), context))

    async def DrainAgent(
        self, request: pb.DrainAgentRequest, context: aio.ServicerContext
    ) -> pb.DrainAgentResponse:
        key = _uuid(request.agent_id)
        view = await set_drain(self.svc.scheduler, self.svc.tenant, key, request.drain) if key else None
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"agent {request.agent_id!r} not found")
            raise AssertionError("unreachable")
        return pb.DrainAgentResponse(agent=_agent_proto(view))

    async def ValidatePipeline(
        self, request: pb.ValidatePipelineRequest, context: aio.ServicerContext
    ) -> pb.ValidatePipelineResponse:
        filename = request.filename or ".buildit.kdl"
        diagnostics = validate(request.source, filename)
        stages = [] if diagnostics else [stage.name for stage in load(request.source, filename).stages]
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
