"""Why a queued stage waits, in words: pure functions of the stage and the fleet, no I/O.

Why apart from `planning.match`: matching runs on every dispatch and must stay as cheap as it is;
explaining is for people, so the scheduler asks for it only when a stage has waited a while or the
fleet changed (see `Scheduler._explain`), once per kind of requirement rather than once per stage
(`requirement`). The words name what the stage asks for and what the fleet has, so the reader
knows what to start, resume or fix: "no connected agent has os=windows; agents: a (os=linux)",
"all 3 matching agents are busy", "the only matching agent, b, is draining".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from uuid import UUID

from agent.contract.types import StageStatus
from controller.scheduling.fleet import AgentConn
from controller.scheduling.model import RunState, StageState
from controller.scheduling.planning import agent_can_run

#: Agents named in a reason before "and N more": a reason is one line, not an inventory.
LISTED_AGENTS = 5
#: A stage gets a reason once it has waited this long: most waits end sooner (a slot frees up),
#: and explaining those would cost a write each on the busiest path.
EXPLAIN_AFTER_S = 1.0
#: At most one pass over the queue per this many seconds, however many stages come of age.
EXPLAIN_INTERVAL_S = 0.5


def requirement(stage: StageState) -> Hashable:
    """What decides a stage's reason besides the fleet: stages alike share one explanation."""
    return (stage.executor, frozenset(stage.labels.items()), stage.org, stage.tenant)


def explain(stage: StageState, agents: Iterable[AgentConn]) -> str:
    """Why no agent takes `stage` now ("" when one could: it is about to be leased).

    Checked in the order a person would fix it: an agent for this tenant at all, one with what the
    stage asks for (labels, executor), one connected, one not draining, a free slot.
    """
    fleet = list(agents)
    if not fleet:
        return "no agent is registered: start one with `buildit agent` (the controller's banner shows how)"
    serving = [a for a in fleet if a.serves(stage.org, stage.tenant)]
    if not serving:
        return (
            "no agent serves this tenant: register one with a registration token of this tenant "
            "or of its organization"
        )
    fitting = [a for a in serving if agent_can_run(stage.labels, stage.executor, a.labels, a.executors)]
    if not fitting:
        return _nothing_fits(stage, serving)
    offline = [a for a in fitting if not a.online]
    draining = [a for a in fitting if a.online and a.draining]
    busy = [a for a in fitting if a.online and not a.draining and a.free <= 0]
    if len(offline) + len(draining) + len(busy) < len(fitting):
        return ""
    states = [("offline", offline), ("draining", draining), ("busy", busy)]
    present = [(word, group) for word, group in states if group]
    if len(fitting) == 1:
        word, group = present[0]
        agent = group[0]
        detail = f" ({len(agent.running)} of {agent.capacity} slots)" if word == "busy" else ""
        if word == "draining" and agent.drain_requested_by == "operator":
            detail = " (drained by an operator: resume it to give it stages)"
        return f"the only matching agent, {agent.name}, is {word}{detail}"
    if len(present) == 1:
        return f"all {len(fitting)} matching agents are {present[0][0]}"
    counts = ", ".join(f"{len(group)} {word}" for word, group in present)
    return f"none of the {len(fitting)} matching agents is free: {counts}"


def _nothing_fits(stage: StageState, serving: Sequence[AgentConn]) -> str:
    """The reason when no agent of the tenant has what the stage asks for, naming the agents."""
    labels = ", ".join(f"{key}={value}" for key, value in sorted(stage.labels.items()))
    has_labels = any(all(a.labels.get(k) == v for k, v in stage.labels.items()) for a in serving)
    has_executor = any(stage.executor in a.executors for a in serving)
    wants: list[str] = []
    if labels and not has_labels:
        wants.append(labels)
    if not has_executor:
        wants.append(f"the {stage.executor} executor")
    if not wants:  # each exists, never on the same agent
        wants = [labels, f"the {stage.executor} executor"]
    connected = [a for a in serving if a.online]
    if not connected:
        return f"no connected agent has {' and '.join(wants)} (no agent is connected)"
    show_executors = not has_executor or len(wants) == 2

    def describe(agent: AgentConn) -> str:
        own = ",".join(f"{k}={v}" for k, v in sorted(agent.labels.items())) or "no labels"
        if show_executors:
            own += f"; {'+'.join(agent.executors)}"
        return f"{agent.name} ({own})"

    names = [describe(a) for a in sorted(connected, key=lambda a: a.name)[:LISTED_AGENTS]]
    more = len(connected) - len(names)
    listing = ", ".join(names) + (f" and {more} more" if more > 0 else "")
    return f"no connected agent has {' and '.join(wants)}; agents: {listing}"


def explain_all(stages: Iterable[StageState], agents: Sequence[AgentConn]) -> dict[UUID, str]:
    """The reason of each stage by id, computed once per `requirement` (the fleet is shared)."""
    known: dict[Hashable, str] = {}
    reasons: dict[UUID, str] = {}
    for stage in stages:
        key = requirement(stage)
        if key not in known:
            known[key] = explain(stage, agents)
        reasons[stage.id] = known[key]
    return reasons


def run_reason(run: RunState) -> str:
    """Why a run waits: its first waiting stage's reason, naming the stages that share it.

    "" when none of its queued stages has a reason (nothing waits, or not for long yet).
    """
    waiting = sorted(
        (s for s in run.stages.values() if s.status is StageStatus.QUEUED and s.waiting_reason),
        key=lambda s: s.index,
    )
    if not waiting:
        return ""
    reason = waiting[0].waiting_reason
    alike = [s.name for s in waiting if s.waiting_reason == reason]
    shown = ", ".join(f"'{name}'" for name in alike[:3]) + (
        f" and {len(alike) - 3} more" if len(alike) > 3 else ""
    )
    text = f"stage {shown} waits: {reason}" if len(alike) == 1 else f"stages {shown} wait: {reason}"
    others = len(waiting) - len(alike)
    if others:
        text += f" ({others} more wait{'s' if others == 1 else ''} for other reasons)"
    return text


def duration_text(seconds: float) -> str:
    """A duration as people write it in the pipeline file: "1h", "1h30m", "90s" -> "1m30s", "500ms"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{value}{unit}" for value, unit in parts if value) or "0s"


def timed_out_message(timeout_s: float, reason: str) -> str:
    """The message of a stage the queue timeout ended: how long it waited, and why."""
    return f"no agent took it within {duration_text(timeout_s)}" + (f": {reason}" if reason else "")
