"""Which engine the BuildIt tables talk to, chosen at run time.

Piccolo normally finds its engine through a `piccolo_conf` module imported by name (`DB` in it,
read once per table and cached). BuildIt picks its database at run time instead (from settings,
or per test), so `bind()` points every table at the engine directly and makes
`controller.db.piccolo_conf` hand out that same engine: Piccolo's migration runner, and the
throw-away table classes it builds, still look the engine up through `piccolo_conf`.

Piccolo imports the module named by the PICCOLO_CONF environment variable, else `piccolo_conf`.
`bind()` registers BuildIt's module under the name `piccolo_conf` in this process rather than
setting the variable: the environment is inherited by every process the controller starts,
including the local executor's build commands, and a Piccolo project built by BuildIt must find
its own `piccolo_conf`, not ours.

One process talks to one database at a time: binding is process-wide.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import DEFAULT_MODULE_NAME, ENVIRONMENT_VARIABLE
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.query.methods.select import Select
from piccolo.table import Table

# Piccolo's Engine is generic in its transaction class; BuildIt code holds either kind.
AnyEngine: TypeAlias = Engine[Any]

PICCOLO_CONF_MODULE = "controller.db.piccolo_conf"
#: The Piccolo app holding every BuildIt table (its module, `controller.tables`, is named in
#: piccolo_conf's app registry and imported by Piccolo, so this layer imports no domain).
APP_NAME = "buildit"

_bound: AnyEngine | None = None


def all_tables() -> list[type[Table]]:
    """Every table BuildIt queries: the app's tables and Piccolo's migration bookkeeping table."""
    registry = importlib.import_module(PICCOLO_CONF_MODULE).APP_REGISTRY
    return [*registry.get_table_classes(APP_NAME), Migration]


def bind(engine: AnyEngine) -> None:
    """Point every BuildIt table (and Piccolo's own lookups) at `engine`, for this process."""
    global _bound
    # Piccolo's MigrationManager calls engine_finder(), which imports `piccolo_conf` by name.
    sys.modules[DEFAULT_MODULE_NAME] = importlib.import_module(PICCOLO_CONF_MODULE)
    if os.environ.get(ENVIRONMENT_VARIABLE, PICCOLO_CONF_MODULE) != PICCOLO_CONF_MODULE:
        # Some other configuration was named for this process; BuildIt's tables need ours.
        os.environ[ENVIRONMENT_VARIABLE] = PICCOLO_CONF_MODULE
    for table in all_tables():
        table._meta.db = engine
    _bound = engine


def bound_engine() -> AnyEngine | None:
    """The engine of the last `bind()`, or None before the first one."""
    return _bound


def write_transaction() -> AbstractAsyncContextManager[Any]:
    """A transaction on the bound engine for work that reads and then writes.

    On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken at the start, so concurrent writers
    queue behind the busy timeout. Piccolo's default (`BEGIN DEFERRED`) upgrades to a write lock
    late, and in WAL mode that fails at once with "database is locked" when another connection
    wrote since the transaction's first read. On PostgreSQL it is an ordinary transaction; lock the
    rows you read with `.lock_rows()` (Piccolo refuses `lock_rows` on SQLite, which needs none
    inside this transaction).
    """
    engine = _bound
    if engine is None:
        raise RuntimeError("no database is bound: call controller.db.open_database() first")
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    transaction: AbstractAsyncContextManager[Any] = engine.transaction()
    return transaction


def for_update(query: Select[Any]) -> Select[Any]:
    """`query` locking the rows it reads until the write transaction ends: `.lock_rows()` on
    PostgreSQL; unchanged on SQLite, whose `write_transaction` already holds the write lock."""
    return query if isinstance(_bound, SQLiteEngine) else query.lock_rows()


async def ping() -> None:
    """Ask the bound database a trivial question (readiness checks); raises when it cannot answer."""
    await Migration.count()
