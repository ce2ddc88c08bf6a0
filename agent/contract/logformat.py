"""The one log line format of the controller and its agents: readable, and naming the pipeline,
run and stage on every line about a stage.

    2026-12-03 14:54:47.517 INFO  agent: stage succeeded  pipeline=dag run=3 stage=lint attempt=1 lease=4f2a…

Every module keeps logging through the standard library (`logging.getLogger(__name__)`), so
third-party lines (grpc, uvicorn, dulwich) come out in the same format. A line is about a stage
when it is logged while that stage is bound (`bind_stage`, a context variable: the task running
the stage binds it, and so does every task it starts), or when it says so itself
(`log.info(..., extra=about(ref))`, for lines logged elsewhere, such as a cancel arriving on the
lease stream).

Here, in the shared contract package, because both sides print it and neither may import the
other; it imports only the standard library. Why not structlog: every call site is stdlib logging
already, and structlog would render those records through a processor chain (its
ProcessorFormatter) to produce the same line, at a higher cost per line and one more import in
every agent. A line costs one context-variable read and a string join here; a stage's fields are
rendered once, when its `StageRef` is made.

The level: `BUILDIT_LOG_LEVEL` (debug, info, warning, error), else the process's default (INFO for
`buildit controller` and `buildit agent`, WARNING for `buildit up`, which prints its banner last).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from agent.contract.types import StageLease

__all__ = [
    "LEVELS",
    "LEVEL_ENV",
    "LineFormatter",
    "StageRef",
    "about",
    "bind_stage",
    "configure",
    "current_stage",
    "level_from_env",
    "stage_ref",
]

LEVEL_ENV = "BUILDIT_LOG_LEVEL"
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: The record attribute `about()` sets (a StageRef).
_ATTRIBUTE = "buildit_stage"


def _field(key: str, value: str) -> str:
    """`key=value`, the value quoted (JSON) when it has spaces, quotes or '=' in it, or is empty."""
    if value and not any(c.isspace() or c in "\"'=" for c in value):
        return f"{key}={value}"
    return f"{key}={json.dumps(value)}"


@dataclass(frozen=True, slots=True)
class StageRef:
    """Which stage a line is about: its pipeline's name, its run's number, its name, and, on an
    agent, the attempt and lease. `text` is the rendered fields, made once."""

    pipeline: str
    run: str
    stage: str
    attempt: int = 0
    lease: str = ""
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [_field("pipeline", self.pipeline), _field("run", self.run), _field("stage", self.stage)]
        if self.attempt:
            parts.append(f"attempt={self.attempt}")
        if self.lease:
            parts.append(_field("lease", self.lease))
        object.__setattr__(self, "text", " ".join(parts))


def stage_ref(lease: StageLease) -> StageRef:
    """The reference of a leased stage. The names come from the variables every stage is given
    (`${pipeline.name}`, `${run.number}` as BUILDIT_PIPELINE_NAME, BUILDIT_RUN_NUMBER), so the
    lease needs no field for them; "?" when a controller did not send them."""
    env = lease.spec.env
    return StageRef(
        pipeline=env.get("BUILDIT_PIPELINE_NAME", "?"),
        run=env.get("BUILDIT_RUN_NUMBER", "?"),
        stage=lease.spec.name,
        attempt=lease.attempt,
        lease=lease.lease_id,
    )


_current: contextvars.ContextVar[StageRef | None] = contextvars.ContextVar("buildit_stage", default=None)


def bind_stage(ref: StageRef | None) -> None:
    """Make every line logged from here on in this context (this task, and the tasks it starts)
    about `ref`. Call it at the top of the task that runs the stage: a task's context is its own
    copy, so the binding ends with the task."""
    _current.set(ref)


def current_stage() -> StageRef | None:
    """The stage bound in this context, if any."""
    return _current.get()


def about(ref: StageRef | None) -> dict[str, object]:
    """`extra=` for a line about `ref` logged outside the stage's own task."""
    return {_ATTRIBUTE: ref}


class LineFormatter(logging.Formatter):
    """`<local time with ms> <LEVEL> <logger>: <message>  <stage fields>`, then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus a traceback's lines); see the class docstring."""
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
        millis = int((record.created - seconds) * 1000)
        line = f"{stamp}.{millis:03d} {record.levelname:<5} {record.name}: {record.getMessage()}"
        ref = getattr(record, _ATTRIBUTE, None) or _current.get()
        if ref is not None:
            line = f"{line}  {ref.text}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure` installs (a class of its own, so a second call replaces it)."""


def level_from_env(default: int, env: Mapping[str, str] | None = None) -> int:
    """BUILDIT_LOG_LEVEL's level, else `default`; ValueError naming the choices for a bad value."""
    raw = (os.environ if env is None else env).get(LEVEL_ENV, "").strip().lower()
    if not raw:
        return default
    if raw not in LEVELS:
        raise ValueError(f"{LEVEL_ENV} must be one of {', '.join(LEVELS)}, got {raw!r}")
    return LEVELS[raw]


def configure(default: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send log lines to `stream` (stderr) in this format at BUILDIT_LOG_LEVEL (else `default`).

    Replaces a handler an earlier call installed; a program that configured logging its own way
    (handlers of another kind on the root logger) keeps them, and only the level is set.
    ValueError for a bad BUILDIT_LOG_LEVEL.
    """
    level = level_from_env(default)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)
    if not root.handlers:
        handler = _Handler(stream or sys.stderr)
        handler.setFormatter(LineFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    # grpc's own chatter about reconnects repeats what the agent already says once.
    logging.getLogger("grpc").setLevel(max(level, logging.WARNING))
