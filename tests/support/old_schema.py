"""Rows written as an older version wrote them, for upgrade tests.

An upgrade test migrates a database up to some older migration and fills it; the table classes
are today's, with columns the old schema lacks. `insert_old` writes a row with only the columns
the table has in the database now, so the test keeps working when later versions add columns.
"""

from __future__ import annotations

import json
from typing import Any

from piccolo.table import Table


async def existing_columns(table: type[Table]) -> set[str]:
    """The columns `table` has in the connected database (SQLite or PostgreSQL)."""
    name = table._meta.tablename
    if table._meta.db.engine_type == "sqlite":
        rows = await table.raw(f"SELECT name FROM pragma_table_info('{name}')")
    else:
        rows = await table.raw(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = {}", name
        )
    return {row["name"] for row in rows}


async def insert_old(row: Table) -> None:
    """Insert `row` as a version whose schema has only the table's existing columns would."""
    table = type(row)
    present = await existing_columns(table)
    names: list[str] = []
    values: list[Any] = []
    for column in table._meta.columns:
        db_name = column._meta.db_column_name
        if db_name not in present:
            continue
        value = getattr(row, column._meta.name)
        names.append(f'"{db_name}"')
        values.append(json.dumps(value) if isinstance(value, dict | list) else value)
    placeholders = ", ".join("{}" for _ in values)
    await table.raw(
        f'INSERT INTO "{table._meta.tablename}" ({", ".join(names)}) VALUES ({placeholders})', *values
    )
