"""The storage layer: Piccolo engines from URLs, binding the tables, migrations.

The only controller package (with the `*/tables.py` modules) that imports Piccolo or a database
driver. A process calls `open_database(url)` once at start and `close_database(engine)` at exit.
"""

from __future__ import annotations

from controller.db.binding import AnyEngine, bind, bound_engine, for_update, ping, write_transaction
from controller.db.engine import (
    ACCEPTED_FORMS,
    ADMIN_APPLICATION,
    DatabaseUnavailable,
    close_database,
    controller_sessions,
    engine_from_url,
    open_database,
    redact_url,
    sqlite_file,
)
from controller.db.errors import is_unique_violation
from controller.db.migrate import migrate

__all__ = [
    "ACCEPTED_FORMS",
    "ADMIN_APPLICATION",
    "AnyEngine",
    "DatabaseUnavailable",
    "bind",
    "bound_engine",
    "close_database",
    "controller_sessions",
    "engine_from_url",
    "for_update",
    "is_unique_violation",
    "migrate",
    "open_database",
    "ping",
    "redact_url",
    "sqlite_file",
    "write_transaction",
]
