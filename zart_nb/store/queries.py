"""The one module that runs zart-nb's SQL: named queries from ``sql/queries.sql``.

Each block of the file is ``-- name: NAME``, a ``--`` purpose line, then the query.
Functions take a connection, so callers compose transactions; rows come back as dicts.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row

_BLOCK = re.compile(r"^-- name: (\w+)\n(?:--[^\n]*\n)*", re.M)


@cache
def queries() -> dict[str, bytes]:
    text = (resources.files("zart_nb.store") / "sql" / "queries.sql").read_text()
    found: dict[str, bytes] = {}
    starts = list(_BLOCK.finditer(text))
    for m, nxt in zip(starts, starts[1:] + [None]):
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        found[m.group(1)] = body.encode()
    return found


def execute(conn: psycopg.Connection, query: str, /, *, binary: bool = False,
            **params: Any) -> psycopg.Cursor:
    """Run ``query``. Parameters go in psycopg's automatic format: bytes (and arrays of
    them) travel in binary, without escaping. ``binary`` asks for results in binary too
    (cheaper to decode when rows carry bytea)."""
    return conn.cursor(row_factory=dict_row).execute(queries()[query], params, binary=binary)


def one(conn: psycopg.Connection, query: str, /, **params: Any) -> dict | None:
    return execute(conn, query, **params).fetchone()


def all_rows(conn: psycopg.Connection, query: str, /, *, binary: bool = False,
             **params: Any) -> list[dict]:
    return execute(conn, query, binary=binary, **params).fetchall()


def rowcount(conn: psycopg.Connection, query: str, /, **params: Any) -> int:
    return execute(conn, query, **params).rowcount
