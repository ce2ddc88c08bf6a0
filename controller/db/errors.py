"""Recognising database errors without importing a driver outside controller.db.

Services (`controller.*.services`) turn a unique violation into a user-facing conflict ("a pipeline
with that name already exists"); each driver raises its own exception type for it, so the test
lives here.
"""

from __future__ import annotations

import sqlite3

import asyncpg

_SQLITE_UNIQUE_NAMES = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def is_unique_violation(exc: BaseException) -> bool:
    """True when `exc` is a unique (or primary key) constraint violation, on SQLite or PostgreSQL."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return True
    if isinstance(exc, sqlite3.IntegrityError):
        return getattr(exc, "sqlite_errorname", "") in _SQLITE_UNIQUE_NAMES or str(exc).startswith(
            "UNIQUE constraint failed"
        )
    return False
