"""Template engine configuration: the one module that imports Jinja2.

Autoescaping is on for every template: commit messages, branch names and log text are untrusted.
Filters and globals come from controller.web.format so templates format values one way; `can()`
(controller.web.access) tells every template what the caller may do, so pages hide what it cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from jinja2.runtime import Context
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from controller.web import access
from controller.web import format as fmt


@pass_context
def _can(context: Context, permission: str) -> bool:
    """`{% if can("run") %}`: whether the page's caller holds a permission (see controller.web.access)."""
    request: Any = context.get("request")
    return access.can(request, permission)


@pass_context
def _page_caller(context: Context) -> Any:
    """`page_caller()`: the signed-in caller of the page (None on open pages)."""
    return access.request_caller(context.get("request"))


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
        ago=fmt.ago,
        exact=fmt.exact,
        seconds=fmt.seconds_text,
    )
    env.globals.update(
        status_icon=fmt.status_icon,
        status_word=fmt.status_word,
        FINISHED=fmt.FINISHED,
        can=_can,
        page_caller=_page_caller,
    )
    return env


def template_config(templates: Path) -> TemplateConfig[JinjaTemplateEngine]:
    """Litestar's template configuration for the UI pages."""
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment(templates)))
