"""What create_app registers for the UI: page controllers, the static files route, templates."""

from __future__ import annotations

import logging
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from controller.auth.permissions import Permission, requires
from controller.web.account_views import AccountPagesController
from controller.web.paths import web_dir
from controller.web.repo_views import RepoPagesController
from controller.web.templating import template_config
from controller.web.views import LogLinesController, PagesController

log = logging.getLogger(__name__)

#: What `make install` copies from web/node_modules; the pages do not work without them.
VENDOR_FILES = ("htmx.min.js", "ansi_up.js")


def handlers() -> list[Any]:
    """The UI's route handlers; static files (our CSS/JS and vendor/ from npm) under /static."""
    vendor = web_dir() / "static" / "vendor"
    missing = [name for name in VENDOR_FILES if not (vendor / name).exists()]
    if missing:
        log.warning(
            "web UI: %s missing from %s; run `make install` (npm ci in web/) for working pages",
            ", ".join(missing),
            vendor,
        )
    return [
        PagesController,
        LogLinesController,
        AccountPagesController,
        RepoPagesController,
        create_static_files_router(
            path="/static", directories=[web_dir() / "static"], name="static", opt=requires(Permission.PUBLIC)
        ),
    ]


def templates() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja templates from web/templates (autoescaped)."""
    return template_config(web_dir() / "templates")
