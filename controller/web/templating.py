"""Template engine configuration: the one module that imports Jinja2.

Autoescaping is on for every template: commit messages, branch names and log text are untrusted.
Filters and globals come from controller.web.format so templates format values one way.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from controller.web import format as fmt


def environment(templates: Path) -> Environment:
    """A Jinja environment over `templates` with autoescaping forced on (not by file extension)."""
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=fmt.duration,
        short_sha=fmt.short_sha,
        timestamp=fmt.timestamp,
        first_line=fmt.first_line,
        iso=fmt.iso,
    )
    env.globals.update(status_icon=fmt.status_icon, status_word=fmt.status_word, FINISHED=fmt.FINISHED)
    return env


def template_config(templates: Path) -> TemplateConfig[JinjaTemplateEngine]:
    """Litestar's template configuration for the UI pages."""
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment(templates)))
