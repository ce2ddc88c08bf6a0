"""Reading column values, and writing rows, the same way on every engine."""

from __future__ import annotations

import json
from typing import Any

from piccolo.columns import Column
from piccolo.table import Table

from controller.db.sqlite import InlineSQLiteEngine


def loaded(value: Any) -> Any:
    """A JSON column's value as Python data: Piccolo returns JSON columns as text unless asked not to."""
    return json.loads(value) if isinstance(value, str) else value


class Statement:
    """One SQL statement, built once, for the writes made for every stage of every run.

    Piccolo builds each query anew on every call, which costs more CPU than SQLite takes to run
    a one-row write. A Statement is a fixed text with `{}` for each value (Piccolo's `raw`
    convention); on the inline SQLite engine it goes straight to the connection, on PostgreSQL
    through `Table.raw`. Values go through the same driver adapters as Piccolo's own queries
    (UUIDs, datetimes); JSON columns need `json.dumps` by the caller.
    """

    def __init__(self, table: type[Table], sql: str) -> None:
        self.table = table
        self.sql = sql
        self._sqlite_sql = sql.replace("{}", "?")

    async def run(self, *values: Any) -> list[dict[str, Any]]:
        """Execute with `values` in the order of the `{}` marks; the rows it returns (RETURNING)."""
        engine = self.table._meta.db
        if isinstance(engine, InlineSQLiteEngine):
            return await engine.run_sql(self._sqlite_sql, values)
        rows: list[dict[str, Any]] = await self.table.raw(self.sql, *values)
        return rows


def update_by_id(table: type[Table], columns: list[Column]) -> Statement:
    """`UPDATE <table> SET <col> = {}, ... WHERE id = {}`: values in column order, then the id."""
    sets = ", ".join(f'"{column._meta.db_column_name}" = {{}}' for column in columns)
    return Statement(table, f'UPDATE "{table._meta.tablename}" SET {sets} WHERE "id" = {{}}')


def insert_row(table: type[Table], columns: list[Column]) -> Statement:
    """`INSERT INTO <table> (<col>, ...) VALUES ({}, ...)`: values in column order."""
    names = ", ".join(f'"{column._meta.db_column_name}"' for column in columns)
    marks = ", ".join("{}" for _ in columns)
    return Statement(table, f'INSERT INTO "{table._meta.tablename}" ({names}) VALUES ({marks})')
