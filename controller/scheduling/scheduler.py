"""The scheduler: the lock-holding state machine that follows runs from trigger to end.

One instance per controller process. Every mutation is an operation under one asyncio lock: the
rules are decided by the pure functions of `planning`, the result is written through the `Store`
(one transaction per operation) and only then announced (to agents on their lease streams, to
watchers on the event bus), so nothing a user or an agent was told is lost when the controller
dies. Nothing polls: a stage that becomes ready is matched against the agents' open lease streams
at once, and a single timer task sleeps until the earliest lease, timeout or cancel deadline, queue
timeout, or the moment a waiting stage is due an explanation (`waiting`).

Why one module past 500 lines: it is one concept, the lock. Every method here is an operation on
the same in-memory state under it, and splitting them would only spread that invariant thin.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import secrets as pysecrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from agent.contract.types import CancelReason, CancelStage, StageLease, StageStatus, WorkspaceSource
from controller.definition import secret_refs
from controller.definition.limits import MAX_ENV_VALUE_CHARS
from controller.definition.plan import GitContext
from controller.errors import BuildItError, Conflict, LeaseLost, NotFound, Unauthenticated
from controller.events import EventBus
from controller.scheduling.fleet import CLOSE, AgentConn, AgentEvent, StreamClosed
from controller.scheduling.logs import LogStore
from controller.scheduling.model import DEFAULT_INFRA_RETRIES, RunState, StageState, now, run_status
from controller.scheduling.planning import (
    CANCEL_GRACE_S,
    RETRYABLE,
    TIMEOUT_GRACE_S,
    WHEN_SKIPPED,
    Due,
    RunRequest,
    advance,
    build_run,
    check_env,
    check_retry,
    check_trigger,
    clamp_finished,
    due,
    match,
    next_deadline,
    parse,
    retry_resets,
    secrets_used,
)
from controller.scheduling.ports import NewRun, NoSecrets, SecretSource, Store
from controller.scheduling.waiting import (
    EXPLAIN_AFTER_S,
    EXPLAIN_INTERVAL_S,
    explain,
    explain_all,
    run_reason,
    timed_out_message,
)

# Part of the scheduler's public surface (imported by the doors through this module).
__all__ = ["RETRYABLE", "WHEN_SKIPPED", "Scheduler", "check_trigger", "now"]

log = logging.getLogger(__name__)

#: Pipeline sources longer than this (characters) are parsed and planned in a worker thread: the
#: event loop (every agent and request) must not stall on one big file; small ones stay inline,
#: where a thread hop would cost more than the work.
OFFLOAD_SOURCE_CHARS = 64 * 1024


class Scheduler:
    """See the module docstring."""

    def __init__(
        self,
        store: Store,
        logs: LogStore,
        events: EventBus,
        lease_ttl_s: float = 15.0,
        heartbeat_interval_s: float = 3.0,
        infra_retries: int = DEFAULT_INFRA_RETRIES,
        clock: Callable[[], datetime] = now,
        secrets: SecretSource | None = None,
    ) -> None:
        """`clock` gives the time for every deadline (tests pass a clock they move by hand);
        `secrets` is where leases get the values of the secrets their stages use (none without)."""
        self.store = store
        self.secrets: SecretSource = secrets if secrets is not None else NoSecrets()
        self.logs = logs
        self.events = events
        self.lease_ttl = timedelta(seconds=lease_ttl_s)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.infra_retries = infra_retries
        self.clock = clock
        self.runs: dict[UUID, RunState] = {}
        self.by_lease: dict[str, StageState] = {}
        self.agents: dict[UUID, AgentConn] = {}
        self.queue: list[StageState] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._streams = 0
        self.lease_listeners: list[Callable[[StageState], None]] = []
        self._announce = _Announcements(events)
        #: Pipelines being deleted or deleted (`discard_pipeline`): no run of them is made any more.
        self._discarded: set[UUID] = set()
        # Queue timeouts: (deadline, tie-break, stage), the earliest first. An entry is stale once
        # its stage left the queue or was queued again (its `queue_deadline` differs): skipped.
        self._queue_deadlines: list[tuple[datetime, int, StageState]] = []
        self._ticket = itertools.count()
        # Waiting reasons (see `_explain`): when the next pass is due, and whether the fleet
        # changed since the last one (then every waiting stage is explained again).
        self._explain_due: datetime | None = None
        self._fleet_changed = False
        self._stopping = False

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        """One scheduler operation: exclusive (the lock), one database transaction, then its events.

        A stage transition writes several rows (the stage, its run, the next stage's lease); one
        commit for them all costs less than a commit each, and no reader sees half of it. Events
        go to watchers once the transaction has ended (still under the lock, so in order): a
        watcher that reads the database on an event finds what the event announced.
        """
        async with self._lock:
            self._announce.hold()
            try:
                async with self.store.transaction():
                    yield
            finally:
                self._announce.release()

    async def settled(self) -> None:
        """Wait until the operation running now has committed.

        Why, although events are announced after their commit: a reader that acts on something
        else (a REST answer, the scheduler's in-memory state) waits here for the rows behind it.
        The lock is fair, so this queues behind the current operation only and costs nothing.
        """
        async with self._lock:
            pass

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load active runs and agents; give held leases one TTL for their agents to come back.

        While the controller was down no agent could heartbeat, so a stored deadline says little.
        Every held lease gets a fresh deadline of one TTL from now: an agent that reconnects and
        heartbeats keeps its stage running; a lease nobody claims expires then and is requeued.
        """
        grace = self.clock() + self.lease_ttl
        async with self._operation():
            for agent in await self.store.load_agents():
                self.agents[agent.id] = agent
            for run in await self.store.load_active_runs():
                self.runs[run.id] = run
                for stage in run.stages.values():
                    if stage.lease_id is not None:
                        self.by_lease[stage.lease_id] = stage
                        if stage.lease_deadline is None or stage.lease_deadline < grace:
                            stage.lease_deadline = grace
                        if stage.agent_id in self.agents:
                            self.agents[stage.agent_id].running.add(stage.lease_id)
                    elif stage.status is StageStatus.QUEUED:
                        self.queue.append(stage)
            self.queue.sort(key=lambda s: (s.queued_at or grace, s.index))
            for stage in self.queue:
                # The queue timeout counts from when it was queued, but agents get one TTL to
                # come back first: a long restart must not end every waiting stage at once.
                self._track_queue_deadline(stage, not_before=grace)
            # Reasons stored before the restart are re-explained once the agents had their TTL.
            self._fleet_changed = bool(self.queue)
            self._explain_due = grace if self.queue else None
            for agent in self.agents.values():
                await self.store.save_agent_status(agent)
            await self._expire_due()
            for run in list(self.runs.values()):
                await self._advance(run)
        self._timer = asyncio.create_task(self._timer_loop(), name="scheduler-timer")

    async def stop(self) -> None:
        """Stop the timer and close agent streams (agents reconnect to the next controller).

        The timer is asked to stop between operations, not cancelled inside one: a cancel landing
        in a transaction's commit could leave its pooled connection unreleased.
        """
        if self._timer:
            self._stopping = True
            self._wake.set()
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._timer)
            except TimeoutError:
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
        for agent in self.agents.values():
            if agent.events is not None:
                agent.events.put_nowait(CLOSE)

    # ------------------------------------------------------------------ runs

    async def trigger(
        self,
        pipeline_id: UUID,
        branch: str = "main",
        sha: str = "",
        message: str = "",
        author: str = "",
        trigger: str = "api",
        source: str | None = None,
        workspace: WorkspaceSource | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunState:
        """Create a run of a pipeline: plan it, persist it, queue what is ready.

        `source` is the pipeline file to run instead of the stored one (a watched repository's
        `.buildit.kdl` at the commit); an invalid one makes a run in `error` with its diagnostics.
        `workspace` is the commit every stage's workspace is fetched at. `env` are variables for
        this run (`${env.NAME}`, overriding the pipeline's own), checked by `check_env`.

        Parsing and planning happen outside the lock (in a worker thread for big sources), so a
        big pipeline file never stalls the agents and requests the other operations serve; only
        taking the run number and storing the run are operations.
        """
        check_trigger(branch, sha, message, author)
        variables = check_env(env)
        if source is None:
            config = await self.store.pipeline_config(pipeline_id)
            if config is None:
                raise NotFound(f"pipeline {pipeline_id} not found")
            _, source = config
        offload = len(source) > OFFLOAD_SOURCE_CHARS
        parsed = await asyncio.to_thread(parse, source) if offload else parse(source)
        git = GitContext(sha=sha, branch=branch, message=message, author=author)
        # Which of the secrets it uses are set (names only: values are read when a stage is leased).
        used = secrets_used(source)
        available = await self.secrets.available(pipeline_id, used) if used else frozenset()

        owner = await self.store.pipeline_owner(pipeline_id)

        def new_run(number: int | None) -> NewRun:
            if number is None or pipeline_id in self._discarded:
                raise NotFound(f"pipeline {pipeline_id} not found")
            request = RunRequest(pipeline_id, number, git, workspace, variables, available)
            run = build_run(parsed, request, self.clock())
            if owner is not None:
                run.org, run.tenant = owner
                for stage in run.stages.values():
                    stage.org, stage.tenant = owner
            return NewRun(
                run,
                pipeline_id,
                branch,
                sha,
                message,
                author,
                trigger,
                run.error,
                source,
                workspace,
                variables,
            )

        if offload:
            # Planning a big file takes long: take the number in one short operation, plan in a
            # worker thread with the lock free, store in another.
            async with self._operation():
                number = await self.store.next_run_number(pipeline_id)
            new = await asyncio.to_thread(new_run, number)
            async with self._operation():
                await self._store_new(new)
        else:
            # A small file plans in well under a millisecond: one operation, one commit.
            async with self._operation():
                new = new_run(await self.store.next_run_number(pipeline_id))
                await self._store_new(new)
        return new.run

    async def _store_new(self, new: NewRun) -> None:
        """Insert a planned run, queue what is ready and announce it (inside an operation)."""
        run = new.run
        await self.store.insert_run(new)
        if not run.status.finished:
            self.runs[run.id] = run
            await self._advance(run)
        self._announce.publish_run(run)

    async def pipeline_name(self, pipeline_id: UUID) -> str | None:
        """The name of a pipeline, or None (from the store's cache)."""
        config = await self.store.pipeline_config(pipeline_id)
        return config[0] if config is not None else None

    async def pipeline_owner(self, pipeline_id: UUID) -> tuple[UUID, UUID] | None:
        """A pipeline's (org, tenant), or None (unknown, or a store that keeps no owners)."""
        return await self.store.pipeline_owner(pipeline_id)

    async def cancel_run(self, run_id: UUID, reason: str = "") -> RunState | None:
        """Cancel a run: unstarted stages end now, running ones are told to stop (within 1 s).

        `reason` (the canceller's words, may be empty) is added to every cancelled stage's message.
        """
        why = f": {reason}" if reason else ""
        async with self._operation():
            run = self.runs.get(run_id)
            if run is None:
                return None
            run.cancel_requested = True
            # Stored now, not only when the run's status changes: a restart must not forget it.
            await self.store.save_run(run)
            deadline = self.clock() + timedelta(seconds=CANCEL_GRACE_S)
            for stage in run.stages.values():
                if stage.status.finished:
                    continue
                if stage.lease_id is not None:
                    stage.cancel_deadline = deadline
                    self._tell(
                        stage, CancelStage(stage.lease_id, CancelReason.USER, f"the run was cancelled{why}")
                    )
                    await self.store.save_stage(stage)
                else:
                    await self._finish_stage(
                        stage, StageStatus.CANCELLED, f"cancelled before it started{why}"
                    )
            self._wake.set()
            await self._advance(run)
            return run

    async def retry_stage(self, run_id: UUID, stage_name: str) -> RunState:
        """Run one failed, timed-out, errored or cancelled stage again, as a new attempt.

        Why: a flaky test or a lost machine should not cost a whole new run. The run may be
        finished (it becomes active again: reloaded, `finished_at` and `cancel_requested`
        cleared) or still running other branches. The stage gets attempt + 1 (earlier attempts'
        logs stay readable with `?attempt=`) and goes back to the DAG as pending, so it is queued
        at once; every stage below it (through `needs`, transitively) that was skipped or
        cancelled because of it goes back to pending too, and runs once it succeeds. Stages
        skipped by their `when` stay skipped.

        Counters: a manual retry resets `user_retries_used` and `infra_failures` of the stage
        (and of the stages reset below it). An operator asking again is a fresh start: the
        stage gets its full `retries` budget and its full allowance of lost agents again, as a
        new run would give it. The attempt number keeps counting, so logs never collide.

        Refused (Conflict) for a stage in any other status, for a stage whose own needs have not
        all succeeded (retry those instead), and while the run is being cancelled; NotFound for
        an unknown run or stage. A refusal changes nothing.
        """
        async with self._operation():
            run = self.runs.get(run_id)
            active = run is not None
            if run is None:
                run = await self.store.load_run(run_id)
                if run is None:
                    raise NotFound(f"run {run_id} not found")
            stage = check_retry(run, stage_name, active)
            reset = retry_resets(run, stage_name)
            self._reset(stage, f"retried (attempt {stage.attempt + 1})", new_attempt=True)
            for other in reset:
                # A stage below never ran while its need was unfinished; should one have a log
                # all the same (an earlier retry), a new attempt keeps it readable.
                ran = other.started_at is not None or other.log_size > 0
                self._reset(other, "", new_attempt=ran)
            run.cancel_requested = False
            run.finished_at = None
            run.status = run_status(run)
            if not active:
                self.runs[run.id] = run
            await self.store.save_run(run)
            self._announce.publish_run(run)
            for changed in (stage, *reset):
                await self.store.save_stage(changed)
                self._announce.publish_stage(changed)
            await self._advance(run)
            await self._dispatch()
            return run

    def _reset(self, stage: StageState, message: str, new_attempt: bool) -> None:
        """A finished stage back to pending (not queued: `_advance` queues it when ready)."""
        self._release(stage)
        if stage in self.queue:
            self.queue.remove(stage)
        if new_attempt:
            stage.attempt += 1
        stage.status = StageStatus.PENDING
        stage.infra_failures = 0
        stage.user_retries_used = 0
        stage.agent_id = None
        stage.exit_code = None
        stage.message = message
        stage.queued_at = None
        stage.started_at = None
        stage.finished_at = None
        stage.log_seq = 0
        stage.log_size = 0
        stage.log_verified = False

    async def rerun(self, run_id: UUID, repo_url: str | None = None) -> RunState:
        """A new run (next number) of a finished run: same pipeline file, commit, metadata and env.

        Why: to build exactly the same thing again (a flaky failure, a changed environment). A
        run of a watched repository is planned from the `.buildit.kdl` it used (stored with the
        run) and fetches the same commit; `repo_url` replaces the stored mirror URL, which
        changes when the controller's address does. Runs stored before the pipeline file was
        kept with the run use the pipeline's current file. Its trigger is "rerun"; the variables
        its trigger passed are passed again.

        Refused: an unfinished run (Conflict: cancel it first), an unknown one (NotFound).
        """
        origin = await self.store.run_origin(run_id)
        if origin is None:
            raise NotFound(f"run {run_id} not found")
        if run_id in self.runs or not origin.status.finished:
            raise Conflict(
                f"run {origin.number} is still {origin.status.value}; cancel it first "
                f"(POST .../runs/{origin.number}/cancel), then re-run it",
            )
        workspace = origin.workspace
        if workspace is not None and repo_url:
            workspace = replace(workspace, repo_url=repo_url)
        return await self.trigger(
            origin.pipeline_id,
            branch=origin.branch,
            sha=origin.sha,
            message=origin.message,
            author=origin.author,
            trigger="rerun",
            source=origin.source or None,
            workspace=workspace,
            env=origin.env,
        )

    # ------------------------------------------------------------------ agents

    async def set_operator_drain(self, agent_id: UUID, draining: bool) -> AgentConn:
        """Drain (True) or resume (False) an agent on an operator's word.

        Why: to take a machine out of rotation (maintenance, a bad disk) without stopping it. A
        drained agent keeps running and reporting its current stages but is offered no new ones;
        the flag is stored, so it outlives controller restarts and the agent's heartbeats (which
        only set the agent's own flag). Resuming offers it queued stages at once.
        """
        async with self._operation():
            agent = self.agents.get(agent_id)
            if agent is None:
                raise NotFound(f"agent {agent_id} not found")
            if agent.operator_draining != draining:
                agent.operator_draining = draining
                await self.store.save_agent_status(agent)
                self._announce.publish_agent(agent)
                if not draining:
                    await self._dispatch()
                self._fleet_change()
            return agent

    async def cut_off(self, agent_id: UUID, message: str) -> list[StageState]:
        """End the stages leased to an agent that went down with this process, saying `message`.

        Why: the agent of `buildit up` runs inside the controller's process, so a stop (or a
        crash) of the process kills its stages; left leased, they would come back at the next
        start as a silent attempt 2 ("the agent did not have the stage"). Each is `cancelled`
        with `message` instead, unless its `retries` policy has attempts left: then it is queued
        again, saying so. A re-run beyond that is an operator's choice. Returns the stages.
        """
        async with self._operation():
            held = [s for s in self.by_lease.values() if s.agent_id == agent_id]
            for stage in held:
                run = self.runs.get(stage.run_id)
                if run is None:
                    continue
                if not run.cancel_requested and stage.user_retries_used < stage.spec.retries:
                    stage.user_retries_used += 1
                    await self._requeue(stage, f"attempt {stage.attempt} cut off: {message}; retrying")
                else:
                    await self._finish_stage(stage, StageStatus.CANCELLED, message)
                await self._advance(run)
            return held

    def agent_by_id(self, agent_id: UUID) -> AgentConn | None:
        """The agent, if registered."""
        return self.agents.get(agent_id)

    def holds_stage_of(self, agent_id: UUID, pipeline_id: UUID) -> bool:
        """Whether the agent holds (leased, running) a stage of a run of the pipeline right now.

        What an agent's credential may read is what it holds: the Git mirror of a run's repository
        is served to the agents with a lease of that run. Memory only (a few leases per agent): it
        is on every fetch an agent makes.
        """
        agent = self.agents.get(agent_id)
        if agent is None:
            return False
        for lease_id in agent.running:
            stage = self.by_lease.get(lease_id)
            if stage is None or stage.agent_id != agent_id or stage.status.finished:
                continue
            run = self.runs.get(stage.run_id)
            if run is not None and run.pipeline_id == pipeline_id:
                return True
        return False

    async def agent_registered(self, agent: AgentConn) -> None:
        """Register or refresh an agent (registration itself is done by the agents service)."""
        async with self._operation():
            known = self.agents.get(agent.id)
            if known is not None:
                changed = (known.labels, known.executors, known.capacity, known.name) != (
                    agent.labels,
                    agent.executors,
                    agent.capacity,
                    agent.name,
                )
                known.labels, known.executors = agent.labels, agent.executors
                known.capacity, known.version, known.name = agent.capacity, agent.version, agent.name
            else:
                self.agents[agent.id] = agent
                changed = True
            if changed:
                self._fleet_change()

    async def open_stream(
        self, agent_id: UUID, running_lease_ids: list[str], idle_s: float = 15.0
    ) -> AsyncIterator[AgentEvent | None]:
        """The agent's lease stream: yields events until the agent goes away or a newer stream opens.

        Yields None after `idle_s` without events, so the caller can send a keep-alive ping.
        """
        agent = self.agents.get(agent_id)
        if agent is None:
            raise Unauthenticated("unknown agent")
        queue: asyncio.Queue[AgentEvent | StreamClosed] = asyncio.Queue()
        async with self._operation():
            if self.agents.get(agent_id) is not agent:
                raise Unauthenticated("unknown agent")  # removed while this call waited for the lock
            if agent.events is not None:
                agent.events.put_nowait(CLOSE)
            self._streams += 1
            stream_id = self._streams
            agent.events, agent.stream_id = queue, stream_id
            agent.last_seen = self.clock()
            # A draining agent closes its lease stream for good: one opening a stream is not (a
            # restarted process that drained before). An operator's drain stays.
            agent.agent_draining = False
            reported = set(running_lease_ids)
            for lease_id in reported - agent.running:
                queue.put_nowait(
                    CancelStage(
                        lease_id, CancelReason.LEASE_LOST, "the controller no longer holds this lease"
                    )
                )
            for lease_id in list(agent.running - reported):
                # Leased to this agent but it does not have it: it restarted or never got it.
                stage = self.by_lease.get(lease_id)
                if stage is not None:
                    await self._lease_failed(stage, "the agent did not have the stage after reconnecting")
            # Re-send cancels that may have been missed while the stream was down.
            for lease_id in agent.running:
                stage = self.by_lease.get(lease_id)
                if stage is not None and stage.cancel_deadline is not None:
                    queue.put_nowait(CancelStage(lease_id, CancelReason.USER, "the run was cancelled"))
            await self.store.save_agent_status(agent)
            await self._dispatch()
            self._fleet_change()
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
                    # arrives with the event, and the stream would outlive its agent.
                    async with asyncio.timeout(idle_s):
                        event = await queue.get()
                except TimeoutError:
                    yield None
                    continue
                if isinstance(event, StreamClosed):
                    return
                yield event
        finally:
            # Shielded: the stream usually ends by cancellation, and a second cancel (shutdown)
            # landing inside this transaction would leave it, and its pooled connection, open.
            cleanup = asyncio.ensure_future(self._stream_closed(agent, stream_id, queue))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup
                raise

    async def _stream_closed(
        self, agent: AgentConn, stream_id: int, queue: asyncio.Queue[AgentEvent | StreamClosed]
    ) -> None:
        async with self._operation():
            if agent.stream_id == stream_id:
                agent.events = None
                agent.last_seen = self.clock()
                await self.store.save_agent_status(agent)
                # Offers still queued were never delivered: put their stages back.
                while not queue.empty():
                    pending = queue.get_nowait()
                    if isinstance(pending, StageLease):
                        stage = self.by_lease.get(pending.lease_id)
                        if stage is not None:
                            await self._lease_failed(
                                stage, "the agent disconnected before it got the stage", count=False
                            )
                self._announce.publish_agent(agent)
                self._fleet_change()

    async def heartbeat(
        self, agent_id: UUID, running_lease_ids: list[str], free_slots: int, draining: bool
    ) -> list[str]:
        """Extend the listed leases; returns those the controller no longer honours."""
        lost: list[str] = []
        async with self._operation():
            agent = self.agents.get(agent_id)
            if agent is None:
                raise Unauthenticated("unknown agent")
            agent.last_seen = self.clock()
            if agent.agent_draining != draining:
                # Only the agent's own flag: its heartbeat never clears an operator's drain.
                was = agent.draining
                agent.agent_draining = draining
                await self.store.save_agent_status(agent)
                self._announce.publish_agent(agent)
                if was and not agent.draining:
                    await self._dispatch()
                self._fleet_change()
            for lease_id in running_lease_ids:
                stage = self.by_lease.get(lease_id)
                if stage is None or stage.agent_id != agent_id:
                    lost.append(lease_id)
                    continue
                await self._extend(stage)
        return lost

    async def extend(self, agent_id: UUID, lease_id: str) -> StageState:
        """Extend one lease (fenced: LeaseLost when this agent does not hold it)."""
        async with self._operation():
            stage = self._current(agent_id, lease_id)
            await self._extend(stage)
            return stage

    async def _extend(self, stage: StageState) -> None:
        current = self.clock()
        previous = stage.lease_deadline
        stage.lease_deadline = current + self.lease_ttl
        # Persist only when the stored deadline has less than half a TTL left: the database sees one
        # write per half-TTL per lease, not one per heartbeat.
        if previous is None or previous - current < self.lease_ttl / 2:
            await self.store.save_stage(stage)

    def _current(self, agent_id: UUID, lease_id: str) -> StageState:
        stage = self.by_lease.get(lease_id)
        if stage is None or stage.agent_id != agent_id or stage.status.finished:
            raise LeaseLost(f"lease {lease_id} is not held by this agent any more")
        return stage

    async def stage_started(self, agent_id: UUID, lease_id: str, started_at: datetime | None) -> StageState:
        """The agent began running the stage (fenced)."""
        async with self._operation():
            stage = self._current(agent_id, lease_id)
            if stage.status is not StageStatus.RUNNING:
                current = self.clock()
                stage.status = StageStatus.RUNNING
                stage.started_at = started_at or current
                stage.timeout_deadline = current + timedelta(seconds=stage.spec.timeout_s + TIMEOUT_GRACE_S)
                await self._extend(stage)
                await self.store.save_stage(stage)
                self._announce.publish_stage(stage)
                self._wake.set()
                run = self.runs[stage.run_id]
                await self._advance(run)
            return stage

    async def stage_finished(
        self,
        agent_id: UUID,
        lease_id: str,
        status: StageStatus,
        exit_code: int | None,
        message: str,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> StageState:
        """The agent reports how the stage ended (fenced); retries happen here.

        A stage that ended quickly may never have been reported running: `started_at` comes with
        the final status then. `finished_at` is the agent's clock, kept within [started_at, now]
        (`planning.clamp_finished`) so a skewed clock cannot record a nonsense duration.
        """
        async with self._operation():
            stage = self._current(agent_id, lease_id)
            run = self.runs[stage.run_id]
            if stage.started_at is None and started_at is not None:
                stage.started_at = started_at
            stage.exit_code = exit_code
            self._release(stage)
            retryable = status in (StageStatus.FAILED, StageStatus.TIMED_OUT)
            if retryable and not run.cancel_requested and stage.user_retries_used < stage.spec.retries:
                stage.user_retries_used += 1
                reason = message or status.value
                await self._requeue(stage, f"attempt {stage.attempt} {reason}; retrying")
            else:
                ended = clamp_finished(finished_at, stage.started_at, self.clock())
                await self._finish_stage(stage, status, message, ended)
            await self._advance(run)
            await self._dispatch()
            return stage

    async def append_logs(self, agent_id: UUID, lease_id: str, seq: int, data: bytes) -> tuple[int, bool]:
        """Store a log chunk exactly once. Returns (highest stored seq, lease lost?)."""
        async with self._operation():
            stage = self.by_lease.get(lease_id)
            if stage is None or stage.agent_id != agent_id:
                return 0, True
            if seq != stage.log_seq + 1:
                return stage.log_seq, False  # duplicate (already stored) or gap (agent resends)
            path = self.logs.path(stage.run_id, stage.name, stage.attempt)
            # Inline: a chunk lands in the page cache in microseconds, less than a thread hop costs.
            stage.log_size = self.logs.append(path, stage.log_size, data, not stage.log_verified)
            stage.log_verified = True
            stage.log_seq = seq
            await self.store.save_stage(stage)
            self._announce.publish_log(stage, data)
            return seq, False

    async def check_deadlines(self) -> None:
        """Handle every lease, timeout, cancel and queue deadline that has passed by the clock now,
        and explain the stages that have waited long enough.

        The timer task does this when the earliest deadline comes; tests that move their clock by
        hand call it to see what the timer would do.
        """
        async with self._operation():
            await self._expire_due()

    # ------------------------------------------------------------------ pipelines and agents removed

    async def pipeline_changed(self, pipeline_id: UUID) -> None:
        """A stored pipeline's file was replaced: the next trigger plans from the new one.

        Why: the store caches pipeline files (a trigger reads one on every run). Runs already made
        keep the file they were planned from.
        """
        async with self._operation():
            self.store.forget_pipeline(pipeline_id)

    async def discard_pipeline(self, pipeline_id: UUID, reason: str) -> list[UUID]:
        """A pipeline is being deleted: end its unfinished runs as cancelled and make no new ones.

        Why before its rows go: agents running its stages are told to stop at once (a lost lease:
        they report nothing more, so no log or artifact of a deleted run is written afterwards),
        watchers see the runs end, and the fleet's slots are free for other runs. From now on a
        trigger of the pipeline is NotFound. Returns the ids of the runs it cancelled.
        """
        async with self._operation():
            self._discarded.add(pipeline_id)
            self.store.forget_pipeline(pipeline_id)
            ended = [run for run in self.runs.values() if run.pipeline_id == pipeline_id]
            for run in ended:
                run.cancel_requested = True
                for stage in run.stages.values():
                    if stage.status.finished:
                        continue
                    if stage.lease_id is not None:
                        self._tell(stage, CancelStage(stage.lease_id, CancelReason.LEASE_LOST, reason))
                    await self._finish_stage(stage, StageStatus.CANCELLED, reason)
                run.status = run_status(run)
                run.finished_at = self.clock()
                await self.store.save_run(run)
                self._announce.publish_run(run)
                del self.runs[run.id]
            await self._dispatch()
            return [run.id for run in ended]

    async def remove_agent(self, agent_id: UUID) -> None:
        """Forget an agent that is not connected (an operator removes a machine that is gone).

        Refused (Conflict) while its lease stream is open: a running agent would only register
        again. Stages it still held (its lease not yet expired) are requeued for other agents.
        """
        async with self._operation():
            agent = self.agents.get(agent_id)
            if agent is None:
                return
            if agent.online:
                raise Conflict(
                    f"agent {agent.name} is connected: stop its process first (drain it to let its "
                    "stages finish), then remove it"
                )
            for lease_id in list(agent.running):
                stage = self.by_lease.get(lease_id)
                if stage is not None and stage.agent_id == agent_id:
                    await self._lease_failed(stage, f"agent {agent.name} was removed", count=False)
            del self.agents[agent_id]

    # ------------------------------------------------------------------ internals

    def _tell(self, stage: StageState, event: AgentEvent) -> None:
        agent = self.agents.get(stage.agent_id) if stage.agent_id else None
        if agent is not None and agent.events is not None:
            agent.events.put_nowait(event)

    def _release(self, stage: StageState) -> None:
        if stage.lease_id is not None:
            self.by_lease.pop(stage.lease_id, None)
            agent = self.agents.get(stage.agent_id) if stage.agent_id else None
            if agent is not None:
                agent.running.discard(stage.lease_id)
        stage.lease_id = None
        stage.lease_deadline = None
        stage.timeout_deadline = None
        stage.cancel_deadline = None

    async def _finish_stage(
        self, stage: StageState, status: StageStatus, message: str, at: datetime | None = None
    ) -> None:
        self._release(stage)
        stage.status = status
        stage.message = message
        stage.finished_at = at or self.clock()
        if stage in self.queue:
            self.queue.remove(stage)
        stage.queue_deadline = None
        explained = self._unexplain(stage)
        await self.store.save_stage(stage)
        self._announce.publish_stage(stage)
        if explained:
            await self._refresh_run_reason(stage.run_id)

    async def _requeue(self, stage: StageState, message: str) -> None:
        self._release(stage)
        stage.attempt += 1
        stage.status = StageStatus.QUEUED
        stage.agent_id = None
        stage.exit_code = None
        stage.started_at = None
        stage.queued_at = self.clock()
        stage.log_seq = 0
        stage.log_size = 0
        stage.log_verified = False
        stage.message = message
        self._enqueue(stage)
        await self.store.save_stage(stage)
        self._announce.publish_stage(stage)

    async def _lease_failed(self, stage: StageState, reason: str, count: bool = True) -> None:
        """An infrastructure failure (agent lost): requeue while infra retries remain."""
        old = stage.lease_id
        if old is not None:
            self._tell(stage, CancelStage(old, CancelReason.LEASE_LOST, reason))
        run = self.runs[stage.run_id]
        if run.cancel_requested:
            await self._finish_stage(stage, StageStatus.CANCELLED, "cancelled")
        elif count and stage.infra_failures >= self.infra_retries:
            stage.infra_failures += 1
            await self._finish_stage(
                stage, StageStatus.ERROR, f"{reason} (agent lost {stage.infra_failures} times; giving up)"
            )
        else:
            if count:
                stage.infra_failures += 1
            await self._requeue(stage, f"attempt {stage.attempt}: {reason}; requeued")
        await self._advance(run)

    async def _advance(self, run: RunState) -> None:
        """Queue ready stages, skip blocked ones, update the run's status; dispatch."""
        newly_queued: list[StageState] = []
        if not run.cancel_requested:
            step = advance(run)
            for stage, message in step.skip:
                await self._finish_stage(stage, StageStatus.SKIPPED, message)
            if step.ready:
                queued_at = self.clock()
                for stage in step.ready:
                    stage.status = StageStatus.QUEUED
                    stage.queued_at = queued_at
                    self._enqueue(stage)
                    newly_queued.append(stage)
        else:
            for stage in run.stages.values():
                if stage.status is StageStatus.PENDING:
                    await self._finish_stage(stage, StageStatus.CANCELLED, "cancelled before it started")
        status = run_status(run)
        if status is not run.status:
            run.status = status
            if run.started_at is None and (status is StageStatus.RUNNING or status.finished):
                # A run whose stages all ended before any was reported running starts with its first.
                starts = [s.started_at for s in run.stages.values() if s.started_at is not None]
                running = status is StageStatus.RUNNING
                run.started_at = min(starts) if starts else (self.clock() if running else None)
            if status.finished:
                run.finished_at = self.clock()
            await self.store.save_run(run)
            self._announce.publish_run(run)
        if status.finished:
            self.runs.pop(run.id, None)
        await self._dispatch()
        # Stages leased right away were written by `_lease`; only the others still need their row.
        for stage in newly_queued:
            if stage.lease_id is None:
                await self.store.save_stage(stage)
                self._announce.publish_stage(stage)

    async def _dispatch(self) -> None:
        """Lease queued stages to agents with free slots, oldest stage first (`planning.match`).

        A stage that uses secrets gets their values now, into its lease only; one whose secrets
        cannot be had (deleted since the run was planned, unreadable) ends in `error` saying why.
        """
        if not self.queue:
            return
        failed: list[StageState] = []
        for stage, agent in match(list(self.queue), self.agents.values()):
            values: dict[str, str] = {}
            if stage.secret_templates:
                problem, values = await self._secret_values(stage)
                if problem:
                    await self._finish_stage(stage, StageStatus.ERROR, problem)
                    failed.append(stage)
                    continue
            await self._lease(stage, agent, values)
        for stage in failed:
            run = self.runs.get(stage.run_id)
            if run is not None:
                await self._advance(run)

    async def _secret_values(self, stage: StageState) -> tuple[str, dict[str, str]]:
        """The filled `secrets` of a stage's lease, or ("why not", {})."""
        run = self.runs[stage.run_id]
        needed = secret_refs.names(stage.secret_templates)
        try:
            values = await self.secrets.reveal(run.pipeline_id, needed)
        except BuildItError as exc:
            return f"could not start: {exc.message}", {}
        filled = secret_refs.fill(stage.secret_templates, values)
        if filled.missing:
            missing = secret_refs.describe(filled.missing)
            plural = "s" if len(filled.missing) > 1 else ""
            return (
                f"could not start: secret{plural} {missing} {'are' if plural else 'is'} not set for this "
                f"pipeline (deleted since the run started?); set it with `buildit secret set "
                f"{filled.missing[0]}`, then retry the stage",
                {},
            )
        if filled.oversized:
            return (
                f"could not start: env {secret_refs.describe(filled.oversized)} would be longer than "
                f"{MAX_ENV_VALUE_CHARS:,} characters with its secret's value",
                {},
            )
        return "", filled.secrets

    async def _lease(
        self, stage: StageState, agent: AgentConn, secrets: dict[str, str] | None = None
    ) -> None:
        self.queue.remove(stage)
        stage.queue_deadline = None
        explained = self._unexplain(stage)
        lease_id = pysecrets.token_hex(16)
        deadline = self.clock() + self.lease_ttl
        stage.lease_id = lease_id
        stage.agent_id = agent.id
        stage.lease_deadline = deadline
        stage.log_seq = 0
        stage.log_size = 0
        stage.log_verified = False
        agent.running.add(lease_id)
        self.by_lease[lease_id] = stage
        await self.store.save_stage(stage)  # durable before the agent hears of it
        assert agent.events is not None
        # The secrets' values exist in this lease only (never in the stage's row or state).
        spec = replace(stage.spec, labels=dict(stage.spec.labels), secrets=secrets or {})
        agent.events.put_nowait(
            StageLease(lease_id, str(stage.run_id), str(stage.id), stage.attempt, deadline, spec)
        )
        self._announce.publish_stage(stage)
        if explained:
            await self._refresh_run_reason(stage.run_id)
        for listener in self.lease_listeners:
            listener(stage)
        self._wake.set()

    async def _expire_due(self) -> datetime | None:
        """Handle every deadline that passed and explain waiting stages that are due; return when
        the timer is next needed (None when nothing is due)."""
        current = self.clock()
        upcoming: datetime | None = None
        for stage in list(self.by_lease.values()):
            if stage.lease_id is None:
                continue
            run = self.runs.get(stage.run_id)
            if run is None:
                continue
            passed = due(stage, current)
            if passed is Due.CANCEL:
                await self._finish_stage(
                    stage, StageStatus.CANCELLED, "cancelled (the agent did not confirm)"
                )
                await self._advance(run)
            elif passed is Due.TIMEOUT:
                self._tell(stage, CancelStage(stage.lease_id, CancelReason.TIMEOUT, "the stage timed out"))
                timed_out = f"timed out after {stage.spec.timeout_s:g}s (agent did not report)"
                await self._finish_stage(stage, StageStatus.TIMED_OUT, timed_out)
                await self._advance(run)
            elif passed is Due.LEASE:
                await self._lease_failed(stage, "the agent stopped renewing its lease")
            else:
                deadline = next_deadline(stage)
                if deadline is not None and (upcoming is None or deadline < upcoming):
                    upcoming = deadline
        await self._expire_queued(current)
        if self._explain_due is not None and self._explain_due <= current:
            self._explain_due = await self._explain(current)
        for deadline in (self._queue_deadlines[0][0] if self._queue_deadlines else None, self._explain_due):
            if deadline is not None and (upcoming is None or deadline < upcoming):
                upcoming = deadline
        return upcoming

    # ------------------------------------------------------------------ waiting stages

    def _enqueue(self, stage: StageState) -> None:
        """Put a stage in the queue: its queue timeout starts, and it is explained if it waits."""
        self.queue.append(stage)
        self._track_queue_deadline(stage)
        due = (stage.queued_at or self.clock()) + timedelta(seconds=EXPLAIN_AFTER_S)
        if self._explain_due is None or due < self._explain_due:
            self._explain_due = due
            self._wake.set()

    def _track_queue_deadline(self, stage: StageState, not_before: datetime | None = None) -> None:
        """Note when the queue timeout ends the stage (waking the timer when that is the earliest)."""
        deadline = (stage.queued_at or self.clock()) + timedelta(seconds=stage.queue_timeout_s)
        if not_before is not None and deadline < not_before:
            deadline = not_before
        stage.queue_deadline = deadline
        if len(self._queue_deadlines) > 2 * len(self.queue) + 1024:
            # Most entries are of stages leased long ago: keep the heap as big as the queue.
            self._queue_deadlines = [e for e in self._queue_deadlines if e[2].queue_deadline == e[0]]
            heapq.heapify(self._queue_deadlines)
        earliest = self._queue_deadlines[0][0] if self._queue_deadlines else None
        heapq.heappush(self._queue_deadlines, (deadline, next(self._ticket), stage))
        if earliest is None or deadline < earliest:
            self._wake.set()

    async def _expire_queued(self, current: datetime) -> None:
        """End in `error` every queued stage no agent took within its queue timeout, saying why."""
        heap = self._queue_deadlines
        while heap and heap[0][0] <= current:
            deadline, _, stage = heapq.heappop(heap)
            if stage.queue_deadline != deadline or stage.status is not StageStatus.QUEUED:
                continue
            run = self.runs.get(stage.run_id)
            if run is None or stage.lease_id is not None:
                continue
            reason = explain(stage, self.agents.values()) or stage.waiting_reason
            message = timed_out_message(stage.queue_timeout_s, reason)
            await self._finish_stage(stage, StageStatus.ERROR, message)
            await self._advance(run)

    def _fleet_change(self) -> None:
        """An agent came, went, drained, resumed or changed: waiting stages are explained anew."""
        if self.queue:
            self._fleet_changed = True
            current = self.clock()
            if self._explain_due is None or current < self._explain_due:
                self._explain_due = current
            self._wake.set()

    async def _explain(self, current: datetime) -> datetime | None:
        """Give every stage that has waited EXPLAIN_AFTER_S its reason (`waiting.explain`).

        Explained once and again only when the fleet changed: a reason depends on the stage's
        requirement and the fleet, and a busy agent that frees a slot takes the stage instead.
        Returns when the next pass is due (None: nothing left to explain), never sooner than
        EXPLAIN_INTERVAL_S from now, so a long queue is walked at most that often.
        """
        fleet_changed, self._fleet_changed = self._fleet_changed, False
        after = timedelta(seconds=EXPLAIN_AFTER_S)
        due: datetime | None = None
        todo: list[StageState] = []
        for stage in self.queue:
            if stage.lease_id is not None or stage.status is not StageStatus.QUEUED:
                continue
            ready = (stage.queued_at or current) + after
            if ready > current:
                due = ready if due is None or ready < due else due
            elif fleet_changed or not stage.waiting_reason:
                todo.append(stage)
        touched: set[UUID] = set()
        reasons = explain_all(todo, list(self.agents.values())) if todo else {}
        for stage in todo:
            if reasons[stage.id] != stage.waiting_reason:
                stage.waiting_reason = reasons[stage.id]
                await self.store.save_stage(stage)
                self._announce.publish_stage(stage)
                touched.add(stage.run_id)
        for run_id in touched:
            await self._refresh_run_reason(run_id)
        if due is not None:
            due = max(due, current + timedelta(seconds=EXPLAIN_INTERVAL_S))
        return due

    @staticmethod
    def _unexplain(stage: StageState) -> bool:
        """Forget why a stage waited (it left the queue); True when it had a reason."""
        had = bool(stage.waiting_reason)
        stage.waiting_reason = ""
        return had

    async def _refresh_run_reason(self, run_id: UUID) -> None:
        """Store and announce a run's reason when its waiting stages changed it."""
        run = self.runs.get(run_id)
        if run is None:
            return
        reason = run_reason(run)
        if reason != run.waiting_reason:
            run.waiting_reason = reason
            await self.store.save_run(run)
            self._announce.publish_run(run)

    async def _timer_loop(self) -> None:
        """Sleep until the earliest deadline (or until woken by a new one); never polls."""
        while not self._stopping:
            self._wake.clear()
            async with self._operation():
                upcoming = await self._expire_due()
            timeout = None if upcoming is None else max((upcoming - self.clock()).total_seconds(), 0.0) + 0.01
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: it can swallow stop()'s cancel
                    await self._wake.wait()


class _Announcements:
    """The event bus as an operation sees it: events are held while it runs, published after it.

    Outside an operation (nothing holds them) an event is published at once.
    """

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._held: list[Callable[[], None]] | None = None

    def hold(self) -> None:
        """Start holding events (an operation began)."""
        self._held = []

    def release(self) -> None:
        """Publish the held events in order and stop holding (the operation ended)."""
        held, self._held = self._held or [], None
        for publish in held:
            publish()

    def _emit(self, publish: Callable[[], None]) -> None:
        if self._held is None:
            publish()
        else:
            self._held.append(publish)

    def publish_run(self, run: RunState) -> None:
        """See `EventBus.publish_run`."""
        self._emit(functools.partial(self.bus.publish_run, run))

    def publish_stage(self, stage: StageState) -> None:
        """See `EventBus.publish_stage`."""
        self._emit(functools.partial(self.bus.publish_stage, stage))

    def publish_agent(self, agent: AgentConn) -> None:
        """See `EventBus.publish_agent`."""
        self._emit(functools.partial(self.bus.publish_agent, agent))

    def publish_log(self, stage: StageState, data: bytes) -> None:
        """See `EventBus.publish_log` (one chunk per operation, so the offset it takes is this one's)."""
        self._emit(functools.partial(self.bus.publish_log, stage, data))
