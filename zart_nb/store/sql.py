"""The one place where zart-nb's queries meet the driver.

Queries are the named blocks of ``sql/queries.sql`` (``-- name: NAME``, ``--`` purpose
lines, then the query), loaded once. The store modules name the queries they run when
they are imported (``CLAIM = query("claim_run")``), so that a misspelt name fails at
import, not when the query first runs. Any psycopg error raised while a query runs, or
while a transaction commits, becomes a ``StoreError`` that keeps PostgreSQL's SQLSTATE,
with the driver's exception as its cause: nothing above ``store/`` sees psycopg.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.rows import args_row, class_row, dict_row, scalar_row

from ..errors import StoreError
from .dsn import redact

Connection = psycopg.Connection[Any]
"""A connection of the store (autocommit, search_path on zart's schema)."""

T = TypeVar("T")

_BLOCK = re.compile(r"^-- name: (\w+)\n(?:--[^\n]*\n)*", re.M)


@dataclass(frozen=True)
class Query:
    name: str
    text: bytes


@cache
def _blocks() -> dict[str, bytes]:
    text = (resources.files("zart_nb.store") / "sql" / "queries.sql").read_text()
    found: dict[str, bytes] = {}
    starts = list(_BLOCK.finditer(text))
    for m, nxt in zip(starts, [*starts[1:], None], strict=False):
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        found[m.group(1)] = body.encode()
    return found


_used: set[str] = set()


def query(name: str) -> Query:
    """The named query (KeyError at import when queries.sql has no such block)."""
    _used.add(name)
    return Query(name, _blocks()[name])


def unused_queries() -> set[str]:
    """Blocks of queries.sql that no store module names (a test keeps this empty)."""
    return set(_blocks()) - _used


CONNECTION_FAILURE = "08006"
"""The SQLSTATE of a lost connection for which the driver gave none (the server vanished)."""
CANNOT_CONNECT = "08001"
"""The SQLSTATE of a connection that could not be opened, when the driver gave none."""


def as_store_error(exc: psycopg.Error, conn: Connection | None = None) -> StoreError:
    """``exc`` as the StoreError that callers see: one line, SQLSTATE kept, DSN redacted.

    A lost connection always has a SQLSTATE of class 08 or 57P (``lost`` is true of it),
    even when the driver gave none; an error the driver raised before sending anything
    (a NUL in a text value) has none.
    """
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.OperationalError) and (exc.sqlstate is None or lost(exc.sqlstate)):
        where = f" {redact(_dsn_of(conn))}" if conn is not None else ""
        error = StoreError(f"lost the database{where}: {first}",
                           sqlstate=exc.sqlstate or CONNECTION_FAILURE)
    else:
        code = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        error = StoreError(f"the database refused{code}: {first}", sqlstate=exc.sqlstate)
    error.__cause__ = exc
    return error


def _dsn_of(conn: Connection) -> str:
    """The connection's DSN (without its password), even once the server closed it."""
    try:
        return conn.info.dsn
    except psycopg.Error:
        return "(closed connection)"


def lost(sqlstate: str | None) -> bool:
    """The server went away or cannot be reached: connection failures (08), shutdowns and
    a server starting up or recovering (57P). Not ``None``: nothing was sent."""
    return sqlstate is not None and sqlstate.startswith(("08", "57P"))


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: a text value cannot hold a NUL character,
    which is written ``\\x00`` instead (an exception's message may carry one)."""
    return text.replace("\x00", "\\x00")


@contextmanager
def translated(conn: Connection | None = None) -> Iterator[None]:
    """Run the block with psycopg's errors turned into StoreErrors."""
    try:
        yield
    except psycopg.Error as exc:
        raise as_store_error(exc, conn) from exc


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """A transaction on ``conn`` (committed at the end, rolled back on an exception)."""
    with translated(conn), conn.transaction():
        yield conn


def run_query(conn: Connection, q: Query, params: Mapping[str, Any] | None = None, *,
              factory: Any = None, binary: bool = False) -> psycopg.Cursor[Any]:
    """Run ``q`` on ``conn`` (every query of the store goes through here). Parameters go
    in psycopg's automatic format (bytes travel in binary, without escaping); arrays are
    marked ``%(name)b`` in the queries, since psycopg would quote and escape each element
    of a text array in Python (a fan-out's thousands of names and tasks). ``binary``
    asks for the results in binary too (cheaper to decode when rows carry bytea);
    ``factory`` is psycopg's row factory."""
    try:  # translated(conn), without a context manager's cost on every step's commit
        cursor = conn.cursor(row_factory=factory) if factory is not None else conn.cursor()
        return cursor.execute(q.text, params, binary=binary)
    except psycopg.Error as exc:
        raise as_store_error(exc, conn) from exc


def execute(conn: Connection, q: Query, params: Mapping[str, Any] | None = None) -> None:
    run_query(conn, q, params)


def rowcount(conn: Connection, q: Query, params: Mapping[str, Any] | None = None) -> int:
    return run_query(conn, q, params).rowcount


def one(conn: Connection, q: Query, params: Mapping[str, Any] | None, record: type[T], *,
        binary: bool = False) -> T | None:
    """The first row of ``q`` as a ``record`` (a dataclass built from the column names)."""
    with translated(conn):
        row: T | None = run_query(conn, q, params, factory=class_row(record), binary=binary).fetchone()
        return row


def every(conn: Connection, q: Query, params: Mapping[str, Any] | None, record: type[T], *,
          binary: bool = False) -> list[T]:
    """Every row of ``q`` as ``record``s (dataclasses built from the column names)."""
    with translated(conn):
        rows: list[T] = run_query(conn, q, params, factory=class_row(record), binary=binary).fetchall()
        return rows


def every_positional(conn: Connection, q: Query, params: Mapping[str, Any] | None,
                     make: Callable[..., T], *, binary: bool = False) -> list[T]:
    """Every row of ``q`` as ``make(*columns)``: for the hot paths (a journal of 100,000
    steps), where building records by column name costs a third more. A NamedTuple
    class is filled without a Python call per row (a sixth of loading a journal)."""
    factory = _tuples_of(make) if isinstance(make, type) and issubclass(make, tuple) else args_row(make)
    with translated(conn):
        rows: list[T] = run_query(conn, q, params, factory=factory, binary=binary).fetchall()
        return rows


def _tuples_of(record: type[tuple[Any, ...]]) -> Callable[[psycopg.Cursor[Any]], Any]:
    """psycopg's row factory for rows as ``record`` (a NamedTuple), made by
    ``tuple.__new__`` in C; the columns are counted once, since that skips the check."""
    fill = partial(tuple.__new__, record)
    fields = len(getattr(record, "_fields", ()))

    def factory(cursor: psycopg.Cursor[Any]) -> Any:
        columns = len(cursor.description or ())
        if columns != fields:
            raise TypeError(f"{record.__name__} has {fields} fields, the query {columns} columns")
        return fill
    return factory


def value(conn: Connection, q: Query, params: Mapping[str, Any] | None = None, *,
          binary: bool = False) -> Any:
    """The first column of the first row of ``q`` (None when there is no row)."""
    with translated(conn):
        return run_query(conn, q, params, factory=scalar_row, binary=binary).fetchone()


def column(conn: Connection, q: Query, params: Mapping[str, Any] | None = None) -> list[Any]:
    """The first column of every row of ``q``."""
    with translated(conn):
        return run_query(conn, q, params, factory=scalar_row).fetchall()


def mapping(conn: Connection, q: Query, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The first row of ``q`` as a dict (for rows whose columns are a report's keys)."""
    with translated(conn):
        row: dict[str, Any] | None = run_query(conn, q, params, factory=dict_row).fetchone()
        return row
