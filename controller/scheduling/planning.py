"""Pure planning: the scheduler's decisions as functions of its state, with no I/O and no lock.

Why apart from the state machine: these are the rules (what a trigger may carry, how a compiled
plan becomes a run, which stages are ready or can never run, which agent takes which stage, what a
retry resets, which deadline passed), and they can be read and tested without a database, an event
loop or a clock of their own (every function is given the time). `Scheduler` applies them under its
lock, writes the result through its Store and announces it.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from agent.contract.types import StageStatus, WorkspaceSource
from controller.definition.dag import Dag
from controller.definition.model import Pipeline, PipelineInvalid
from controller.definition.plan import GitContext, RunContext
from controller.definition.secret_refs import plan_deferred, used_secrets
from controller.definition.validate import load
from controller.errors import Conflict, Invalid, NotFound
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState

#: How long an agent has to confirm a cancel before the stage is recorded cancelled anyway.
CANCEL_GRACE_S = 10.0
#: How long past its timeout a stage may go unreported before the controller times it out itself.
TIMEOUT_GRACE_S = 5.0
#: The message of a stage skipped by its `when` (a reloaded run recognises those stages by it).
WHEN_SKIPPED = "skipped: its 'when' condition does not match"
#: How to provide a secret a pipeline uses and its tenant lacks (`{name}`: the secret's name).
SECRET_HINT = (
    "set it with `buildit secret set {name}` (add --repository or --pipeline to narrow it), then run again"
)
#: Stage statuses an operator may retry.
RETRYABLE = frozenset({StageStatus.FAILED, StageStatus.TIMED_OUT, StageStatus.ERROR, StageStatus.CANCELLED})

#: Limits of the variables a trigger passes to a run (`${env.NAME}`).
MAX_ENV_VARS = 100
MAX_ENV_VALUE_BYTES = 64 * 1024

_SHA = re.compile(r"[0-9a-fA-F]{4,64}\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ---------------------------------------------------------------------------------------- triggers


def check_trigger(branch: str, sha: str, message: str, author: str) -> None:
    """Refuse trigger input that could not be stored or shown faithfully (same rules for REST and gRPC)."""
    if (
        not isinstance(branch, str)
        or not branch.strip()
        or len(branch) > 255
        or any(c in branch for c in "\0\n\r")
    ):
        raise Invalid("'branch' must be a branch name (1-255 characters, one line), e.g. \"main\"")
    if sha and (not isinstance(sha, str) or not _SHA.match(sha)):
        raise Invalid(f"'sha' must be a hexadecimal commit id (4-64 digits), got {sha!r}")
    for field_name, value, limit in (("message", message, 10_000), ("author", author, 255)):
        if not isinstance(value, str) or "\0" in value or len(value) > limit:
            raise Invalid(f"'{field_name}' must be text of at most {limit} characters without NUL characters")


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The variables a trigger passes to its run, checked; Invalid (naming the problem) otherwise.

    Why here: REST, gRPC and re-runs all reach the run through `Scheduler.trigger`, so one check
    covers every door. Values are never quoted in a message: they may be credentials.
    """
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise Invalid("'env' must be an object of variable names to string values")
    if len(env) > MAX_ENV_VARS:
        raise Invalid(f"'env' has {len(env)} variables; at most {MAX_ENV_VARS} are allowed")
    checked: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            shown = repr(name)[:80]
            raise Invalid(
                f"'env' variable name {shown} is not valid: use letters, digits and '_', "
                "not starting with a digit (e.g. DEPLOY_TARGET)"
            )
        if not isinstance(value, str):
            raise Invalid(f"'env' variable {name} must have a string value")
        if "\0" in value:
            raise Invalid(f"'env' variable {name} contains a NUL character")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_ENV_VALUE_BYTES:
            raise Invalid(f"'env' variable {name} is longer than {MAX_ENV_VALUE_BYTES // 1024} KiB")
        checked[name] = value
    return checked


@functools.lru_cache(maxsize=64)
def load_pipeline(source: str) -> Pipeline:
    """Parsed pipelines by source: runs of one pipeline share it (a Pipeline is immutable).

    A PipelineInvalid is not cached (lru_cache does not keep exceptions): a broken pipeline is
    rare and its run ends at once.
    """
    return load(source, ".buildit.kdl")


@functools.lru_cache(maxsize=64)
def secrets_used(source: str) -> frozenset[str]:
    """The secret names a pipeline source refers to (none for an invalid one), by source: a
    trigger asks the secrets store about these names only, and most pipelines use none."""
    if "secrets" not in source:
        return frozenset()
    parsed = parse(source)
    return used_secrets(parsed) if isinstance(parsed, Pipeline) else frozenset()


def parse(source: str) -> Pipeline | PipelineInvalid:
    """The pipeline of a source, or why it is invalid (a run in `error` carries that)."""
    try:
        return load_pipeline(source)
    except PipelineInvalid as exc:
        return exc


@dataclass(frozen=True)
class RunRequest:
    """Everything besides the pipeline that a new run is planned from."""

    pipeline_id: UUID
    number: int
    git: GitContext
    workspace: WorkspaceSource | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: The secrets the pipeline uses that are set for it (names only: values come at lease time).
    secrets: frozenset[str] = frozenset()


def build_run(parsed: Pipeline | PipelineInvalid, request: RunRequest, at: datetime) -> RunState:
    """A new run and its stages from a parsed pipeline; a run in `error` when it cannot be planned.

    Why a pure function: planning a big pipeline is CPU work the scheduler does outside its lock
    (in a worker thread for big sources), and nothing here needs the scheduler's state.
    """
    run_id = uuid.uuid4()
    run = RunState(
        id=run_id,
        pipeline_id=request.pipeline_id,
        number=request.number,
        status=StageStatus.PENDING,
        created_at=at,
    )
    try:
        if isinstance(parsed, PipelineInvalid):
            raise parsed
        ctx = RunContext(
            git=request.git,
            pipeline_id=str(request.pipeline_id),
            run_id=str(run_id),
            run_number=request.number,
            source=request.workspace,
            env=request.env,
        )
        deferred = plan_deferred(parsed, ctx, request.secrets, SECRET_HINT)
    except PipelineInvalid as exc:
        run.status = StageStatus.ERROR
        run.error = "\n".join(d.format() for d in exc.diagnostics)
        run.finished_at = at
        return run
    compiled = deferred.plan
    run.when_skipped = compiled.skipped
    for spec in compiled.specs:
        stage = StageState(
            id=uuid.uuid4(),
            run_id=run_id,
            name=spec.name,
            index=spec.index,
            status=StageStatus.PENDING,
            spec=spec,
            needs=spec.needs,
            executor="docker" if spec.image else "local",
            labels=dict(spec.labels),
            secret_templates=deferred.templates.get(spec.name, {}),
            queue_timeout_s=parsed.queue_timeout_for(spec.name),
        )
        if spec.name in compiled.skipped:
            stage.status = StageStatus.SKIPPED
            stage.message = WHEN_SKIPPED
            stage.finished_at = at
        run.stages[spec.name] = stage
    return run


# ----------------------------------------------------------------------------------- advancing


@dataclass(frozen=True)
class Advance:
    """What advancing a run does: stages that can never run (with why), then stages ready now."""

    skip: list[tuple[StageState, str]]
    ready: list[StageState]


def advance(run: RunState) -> Advance:
    """The stages of an uncancelled run to skip (a need ended without success) and to queue.

    Skips cascade: a stage skipped here blocks the stages that need it in turn.
    """
    statuses = {name: s.status for name, s in run.stages.items()}
    dag = Dag({name: s.needs for name, s in run.stages.items()})
    skip: list[tuple[StageState, str]] = []
    while blocked := dag.blocked(statuses):
        for name in blocked:
            stage = run.stages[name]
            failed = [d for d in stage.needs if statuses[d] is not StageStatus.SUCCEEDED]
            skip.append((stage, f"skipped: needs {', '.join(failed)}"))
            statuses[name] = StageStatus.SKIPPED
    return Advance(skip, [run.stages[name] for name in dag.ready(statuses)])


def agent_can_run(
    stage_labels: dict[str, str],
    executor: str,
    agent_labels: dict[str, str],
    agent_executors: list[str] | tuple[str, ...],
) -> bool:
    """An agent may take a stage when it has every label the stage asks for and its executor."""
    if executor not in agent_executors:
        return False
    return all(agent_labels.get(key) == value for key, value in stage_labels.items())


def match(queue: Iterable[StageState], agents: Iterable[AgentConn]) -> list[tuple[StageState, AgentConn]]:
    """Which queued stage goes to which agent now: oldest stage first, to the least busy fitting agent.

    Each lease takes a slot: the count of free slots (and of running stages, the tie-break) goes
    down as stages are assigned, exactly as leasing them one by one would.
    """
    open_agents = [agent for agent in agents if agent.free > 0]
    pairs: list[tuple[StageState, AgentConn]] = []
    if not open_agents:
        return pairs
    free = {agent.id: agent.free for agent in open_agents}
    busy = {agent.id: len(agent.running) for agent in open_agents}
    for stage in queue:
        if not open_agents:
            break
        candidates = [
            a
            for a in open_agents
            if a.serves(stage.org, stage.tenant)
            and agent_can_run(stage.labels, stage.executor, a.labels, a.executors)
        ]
        if not candidates:
            continue
        agent = max(candidates, key=lambda a: (free[a.id], -busy[a.id]))
        pairs.append((stage, agent))
        free[agent.id] -= 1
        busy[agent.id] += 1
        if free[agent.id] == 0:
            open_agents.remove(agent)
    return pairs


# ----------------------------------------------------------------------------------- retries


def check_retry(run: RunState, stage_name: str, active: bool) -> StageState:
    """The stage an operator may retry, or why not (NotFound, Conflict); refusing changes nothing."""
    stage = run.stages.get(stage_name)
    if stage is None:
        names = ", ".join(run.stages) or "none (the pipeline could not be planned)"
        raise NotFound(f"run {run.number} has no stage '{stage_name}'; its stages: {names}")
    needs = {n: run.stages[n].status for n in stage.needs}
    blocker = retry_blocker(run.number, stage_name, stage.status, needs, active and run.cancel_requested)
    if blocker:
        raise Conflict(blocker)
    return stage


def retry_blocker(
    number: int,
    stage_name: str,
    status: StageStatus,
    needs: Mapping[str, StageStatus],
    cancelling: bool,
) -> str | None:
    """Why stage `stage_name` of run `number` cannot be retried now, or None when it can.

    Why apart from `check_retry`: the UI offers a Retry button only where a retry can work, by
    this same rule. `needs` maps the stage's needs to their statuses; `cancelling`: the run is
    still running and being cancelled.
    """
    if status not in RETRYABLE:
        return (
            f"stage '{stage_name}' is {status.value}; only a failed, timed-out, errored "
            "or cancelled stage can be retried"
        )
    if cancelling:
        return f"run {number} is being cancelled; wait until it has finished, then retry stage '{stage_name}'"
    unmet = [n for n, need in needs.items() if need is not StageStatus.SUCCEEDED]
    if unmet:
        return (
            f"stage '{stage_name}' needs {', '.join(repr(n) for n in unmet)}, which did not "
            f"succeed; retry {'that stage' if len(unmet) == 1 else 'those stages'} instead "
            f"('{stage_name}' runs after it succeeds)"
        )
    return None


def retry_resets(run: RunState, stage_name: str) -> list[StageState]:
    """The stages below a retried one that go back to pending with it.

    Those skipped or cancelled because of it (through `needs`, transitively); stages skipped by
    their `when` stay skipped.
    """
    below = Dag({name: s.needs for name, s in run.stages.items()}).descendants(stage_name)
    return [
        s
        for s in run.stages.values()
        if s.name in below
        and s.name not in run.when_skipped
        and s.status in (StageStatus.SKIPPED, StageStatus.CANCELLED)
    ]


# ----------------------------------------------------------------------------------- deadlines


class Due(enum.Enum):
    """Which of a leased stage's deadlines passed (checked in this order)."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"
    LEASE = "lease"


def due(stage: StageState, at: datetime) -> Due | None:
    """The deadline of a leased stage that has passed at `at`, if any."""
    if stage.cancel_deadline is not None and stage.cancel_deadline <= at:
        return Due.CANCEL
    if stage.timeout_deadline is not None and stage.timeout_deadline <= at:
        return Due.TIMEOUT
    if stage.lease_deadline is not None and stage.lease_deadline <= at:
        return Due.LEASE
    return None


def next_deadline(stage: StageState) -> datetime | None:
    """The earliest deadline a leased stage has (what the timer sleeps until)."""
    deadlines = [
        d for d in (stage.cancel_deadline, stage.timeout_deadline, stage.lease_deadline) if d is not None
    ]
    return min(deadlines) if deadlines else None


def clamp_finished(reported: datetime | None, started_at: datetime | None, at: datetime) -> datetime:
    """When a stage ended: the agent's `reported` time, kept within [started_at, at].

    Why: an agent's clock may be skewed; a stage must never end before it started or in the future.
    Without a report the stage ends when the controller hears of it.
    """
    if reported is None or reported > at:
        return at
    if started_at is not None and reported < started_at:
        return min(started_at, at)
    return reported
