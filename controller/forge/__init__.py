"""Talking back to the forge: commit statuses on GitHub, Gitea and GitLab (`status`)."""

from __future__ import annotations

from controller.forge.status import (
    BUILDIT_TO_FORGE,
    StatusReportError,
    StatusTarget,
    report_status,
    validate_target,
)

__all__ = ["BUILDIT_TO_FORGE", "StatusReportError", "StatusTarget", "report_status", "validate_target"]
