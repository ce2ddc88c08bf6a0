"""Typed pipeline model and diagnostics produced by validation."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from agent.contract.types import Resources

#: How long a stage waits for an agent when neither it nor its pipeline sets `queue-timeout`.
DEFAULT_QUEUE_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a pipeline file, addressed as FILE:LINE:COL like a compiler error."""

    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    severity: str = "error"

    def format(self, source: str | None = None) -> str:
        """Render for a terminal: the `file:line:col: error: message` line, the source line, a hint."""
        out = [f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"]
        if source is not None:
            lines = _lines(source)
            if 1 <= self.line <= len(lines):
                text = lines[self.line - 1].expandtabs(1)
                gutter = f"{self.line:>5} | "
                out.append(gutter + text)
                out.append(" " * (len(gutter) - 2) + "| " + " " * max(self.col - 1, 0) + "^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


@lru_cache(maxsize=2)
def _lines(source: str) -> tuple[str, ...]:
    """The source's lines, split once for all the diagnostics formatted against it.

    Callers format each diagnostic with the whole source; splitting it every time would make
    reporting many problems in a big file quadratic. A `str` caches its hash, so the lookup is cheap.
    """
    return tuple(source.splitlines())


class PipelineInvalid(Exception):
    """A pipeline file has one or more problems; `diagnostics` lists all of them."""

    def __init__(self, diagnostics: list[Diagnostic], source: str | None = None) -> None:
        self.diagnostics = diagnostics
        self.source = source
        super().__init__("\n".join(d.format() for d in diagnostics))

    def report(self) -> str:
        """Every diagnostic with its source excerpt, ready to print."""
        return "\n".join(d.format(self.source) for d in self.diagnostics)


@dataclass(frozen=True)
class Location:
    """Where a node starts in the source (1-based)."""

    line: int
    col: int


@dataclass(frozen=True)
class Stage:
    """A stage as written in the pipeline file, validated but not yet interpolated."""

    name: str
    index: int
    location: Location
    commands: tuple[str, ...]
    image: str | None = None
    needs: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    artifacts: tuple[str, ...] = ()
    timeout_s: float = 3600.0
    retries: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    when_branch: str | None = None
    #: `queue-timeout` of the stage (None: the pipeline's, see `Pipeline.queue_timeout_for`).
    queue_timeout_s: float | None = None
    #: Its `resources` node (unset fields: the agent's defaults).
    resources: Resources = field(default_factory=Resources)


TRIGGER_KINDS = ("push", "cron", "manual")


@dataclass(frozen=True)
class Trigger:
    """What starts a run of a pipeline by itself, as written in a `trigger` node.

    `push`: a push to a watched branch, optionally only branches matching `branches` (globs).
    `cron`: the schedule `cron` (UTC) on `branch`, or on the repository's default branch when None.
    `manual`: nothing starts a run by itself; the API, CLI and UI can always start one, whatever the
    triggers, so this kind only documents that the automatic triggers were left out on purpose.
    """

    kind: str
    cron: str | None = None
    branch: str | None = None
    branches: tuple[str, ...] = ()

    def matches_branch(self, branch: str) -> bool:
        """For a push trigger: does a push to `branch` start a run? No globs means every branch."""
        if self.kind != "push":
            return False
        return not self.branches or any(fnmatch.fnmatchcase(branch, glob) for glob in self.branches)


DEFAULT_TRIGGERS = (Trigger("push"),)


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline: its name, global env, stages in file order and what starts its runs."""

    name: str
    stages: tuple[Stage, ...]
    env: tuple[tuple[str, str], ...] = ()
    file: str = ".buildit.kdl"
    # A file without `trigger` nodes runs on pushes, as before triggers existed.
    triggers: tuple[Trigger, ...] = DEFAULT_TRIGGERS
    #: The top-level `queue-timeout` (None: DEFAULT_QUEUE_TIMEOUT_S).
    queue_timeout_s: float | None = None

    def queue_timeout_for(self, name: str) -> float:
        """How long stage `name` may wait for an agent before it ends in `error`.

        Why a rule of its own: the stage's setting wins over the pipeline's, which wins over the
        default, and the scheduler needs the one number when it queues the stage.
        """
        own = self.stage(name).queue_timeout_s
        if own is not None:
            return own
        return self.queue_timeout_s if self.queue_timeout_s is not None else DEFAULT_QUEUE_TIMEOUT_S

    def stage(self, name: str) -> Stage:
        """The stage called `name` (KeyError if absent); a dict lookup, so loops over stages stay linear."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Stage]:
        return {stage.name: stage for stage in self.stages}


def runs_on_push(pipeline: Pipeline, branch: str) -> bool:
    """Does a push to `branch` start a run? The controller asks after the repository watches `branch`.

    True when one of the pipeline's push triggers has no branch filter or a glob matching `branch`
    (`fnmatch` globs, as in `when branch=`); False for a pipeline with only cron or manual triggers.
    """
    return any(trigger.matches_branch(branch) for trigger in pipeline.triggers)


def cron_triggers(pipeline: Pipeline) -> tuple[Trigger, ...]:
    """The pipeline's schedules, in file order, for the controller's scheduler to fire."""
    return tuple(trigger for trigger in pipeline.triggers if trigger.kind == "cron")
