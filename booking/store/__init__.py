"""The SQL layer: small typed functions, ``$n`` parameters, no SQL elsewhere.

Every function takes a :data:`Conn` so that the caller (an activity, the
API's read path, the CLI) decides the transaction.

A table's shape is written once, as a row dataclass: its SELECT lists come from
:func:`columns` (the fields, in order) and its rows from ``Row(**record)``; an INSERT
names a write dataclass's :func:`columns` with as many :func:`placeholders` and passes
:func:`values`. Field names are code, never values: ``tests/test_sql_safety.py`` lets
exactly these into SQL text, and ``tests/test_row_shapes.py`` holds every row dataclass
against its table.
"""

from __future__ import annotations

from dataclasses import astuple, fields
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def columns(row: type[Any], *, table: str = "", exclude: tuple[str, ...] = ()) -> str:
    """The column list of a row dataclass (qualified by ``table`` when given), in field order,
    without the fields in ``exclude`` (computed ones, which the query adds itself)."""
    names = [f.name for f in fields(row) if f.name not in exclude]
    return ", ".join(f"{table}.{name}" if table else name for name in names)


def placeholders(row: type[Any]) -> str:
    """``$1, $2, ...``: one parameter per field of ``row``, for an INSERT of :func:`values`."""
    return ", ".join(f"${i}" for i in range(1, len(fields(row)) + 1))


def values(record: Any) -> tuple[Any, ...]:
    """A write dataclass's values, in the order of its :func:`columns`."""
    return astuple(record)
