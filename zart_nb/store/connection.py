"""The connection to PostgreSQL: one ``Store`` per process, owning the pool.

``ZART_DATABASE_URL`` names any PostgreSQL 14+; without it the embedded server under
``ZART_HOME`` is used (and started if needed). Connections are autocommit with the
``search_path`` on zart's schema, so queries name tables without a schema.
Errors never show a password: DSNs are redacted before they reach a message.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..config import Settings, settings
from ..errors import StoreError, UsageError
from . import embedded, schema
from .dsn import redact
from .sql import CANNOT_CONNECT, Connection, as_store_error

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# While the server is away the pool tries to reconnect in the background and warns at
# every attempt; with no logging set up, Python prints each warning to stderr (a cell's
# output, a worker's log). zart-nb reports an outage once itself (store/reconnect.py),
# so the pool's warnings go only to the handlers an application sets up.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())

__all__ = ["Store", "close_store", "get_store", "redact", "resolve_dsn"]


def resolve_dsn(s: Settings) -> str:
    if s.database_url:
        return s.database_url
    return embedded.server_url(s.home)


class Store:
    """A pool of connections to zart's schema, migrated on open."""

    def __init__(self, s: Settings | None = None, *, max_size: int = 8) -> None:
        self.settings = s or settings()
        if not _SCHEMA_NAME.match(self.settings.schema):
            raise UsageError(f"ZART_SCHEMA={self.settings.schema!r} is not a plain lower-case identifier")
        self.dsn = resolve_dsn(self.settings)
        self.max_size = max_size
        self.pid = os.getpid()
        self._pool: ConnectionPool[Connection] | None = None
        self.listeners: dict[str, Any] = {}  # channel -> notify.Listener, closed with the store

    @property
    def schema(self) -> str:
        return self.settings.schema

    def connect(self) -> Connection:
        """A new connection outside the pool (LISTEN, a worker's own connections)."""
        try:
            return psycopg.connect(self.dsn, autocommit=True, options=f"-c search_path={self.schema}",
                                   connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to {redact(self.dsn)}: {_first_line(exc)}",
                             sqlstate=exc.sqlstate or CANNOT_CONNECT) from None

    def open(self) -> Store:
        with self.connect() as conn:
            schema.migrate(conn, self.schema)
        self._pool = ConnectionPool(
            self.dsn, min_size=1, max_size=self.max_size, open=False, name="zart",
            kwargs={"autocommit": True, "options": f"-c search_path={self.schema}"},
            check=ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=15)
        except PoolTimeout:
            self._pool.close()
            raise StoreError(f"cannot connect to {redact(self.dsn)}: pool timed out",
                             sqlstate=CANNOT_CONNECT) from None
        return self

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection of the pool for the block; a broken one is not given back."""
        if self._pool is None:
            raise StoreError("the store is closed")
        try:
            with self._pool.connection(timeout=30) as conn:
                yield conn
        except PoolTimeout:
            raise StoreError(f"no connection to {redact(self.dsn)} within 30 s") from None
        except psycopg.Error as exc:
            raise as_store_error(exc) from exc

    def close(self) -> None:
        for follower in self.listeners.values():
            follower.close()
        self.listeners.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_store: Store | None = None
_lock = threading.Lock()
_closed_at_exit: set[int] = set()  # pids whose exit closes their store


def get_store() -> Store:
    """The process's store, opened on first use (and again in a forked child).

    It is closed at exit: a pool left to the garbage collector at the interpreter's end
    can wait forever for a lock that one of its worker threads, stopped mid-way as
    daemon threads are then, still holds (a body that failed on a lost database hung
    there instead of exiting).
    """
    global _store
    with _lock:
        if _store is None or _store.pid != os.getpid():
            _store = Store().open()
            if os.getpid() not in _closed_at_exit:
                _closed_at_exit.add(os.getpid())
                atexit.register(close_store)
        return _store


def close_store() -> None:
    global _store
    with _lock:
        if _store is not None and _store.pid == os.getpid():
            _store.close()
        _store = None
