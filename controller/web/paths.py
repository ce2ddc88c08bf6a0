"""Where the web UI's templates and static files live."""

from __future__ import annotations

import os
from pathlib import Path


def web_dir() -> Path:
    """`web/` beside the `controller` package (a source checkout), or BUILDIT_WEB_DIR.

    The UI ships as files, not Python: templates/ and static/ (with static/vendor/ filled by
    `make install` from web/node_modules).
    """
    override = os.environ.get("BUILDIT_WEB_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "web"
