"""The Piccolo configuration module, for the `piccolo` CLI and for Piccolo's own engine lookups.

Use it with `PICCOLO_CONF=controller.db.piccolo_conf .venv/bin/piccolo migrations ...` from the
repository root (see controller.db.migrate for adding a migration).

`DB` is resolved lazily, on first access (Piccolo reads it with `getattr`): it is the engine the
process has bound (`controller.db.bind`, done by `open_database`), else one made from
`BUILDIT_DATABASE_URL` (default: the SQLite file `buildit.db` in `BUILDIT_DATA_DIR`, itself
`.buildit` by default, as for the controller). So importing this
module opens no database and creates no file, and tests can pick their database at run time.
"""

from __future__ import annotations

import os

from piccolo.conf.apps import AppRegistry

from controller.db.binding import AnyEngine, bind, bound_engine
from controller.db.engine import engine_from_url

APP_REGISTRY = AppRegistry(apps=["controller.tables"])


def __getattr__(name: str) -> AnyEngine:
    """Module attribute `DB`: the bound engine, binding one from the environment if needed."""
    if name != "DB":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    engine = bound_engine()
    if engine is None:
        data_dir = os.environ.get("BUILDIT_DATA_DIR") or ".buildit"
        url = os.environ.get("BUILDIT_DATABASE_URL") or f"sqlite:///{data_dir}/buildit.db"
        engine = engine_from_url(url)
        bind(engine)
    return engine
