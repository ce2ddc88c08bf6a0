"""What a pipeline's `trigger` nodes mean for the trigger engine (push filters and cron)."""

from __future__ import annotations

from datetime import datetime

from controller.definition.cron import next_fire
from controller.definition.model import Pipeline
from controller.definition.model import cron_triggers as _cron_triggers
from controller.definition.model import runs_on_push as _runs_on_push


def runs_on_push(pipeline: Pipeline, branch: str) -> bool:
    """Does a push to `branch` start a run of this pipeline (its `trigger "push"` nodes)?"""
    return _runs_on_push(pipeline, branch)


def cron_schedule(pipeline: Pipeline) -> list[tuple[str, str | None]]:
    """(cron expression, branch or None for the default branch) for each `trigger "cron"`."""
    return [(t.cron, t.branch) for t in _cron_triggers(pipeline) if t.cron]


def next_cron(expr: str, after: datetime) -> datetime:
    """When a cron expression fires next, strictly after `after` (UTC)."""
    return next_fire(expr, after)
