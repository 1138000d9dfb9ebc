"""Connections that come back after the database does.

A worker's claim loop and lease heartbeat, the LISTEN thread and a body's heartbeat
each hold a connection of their own for as long as their process lives. When the
server restarts (or the network drops) that connection is gone: each of them then
tries again after a ``Backoff`` (0.1 s doubling to a cap). The process logs the loss
once, with the redacted DSN, and the recovery once (``Outage``, one per process and
database, shared by its threads), however many attempts it took. A ``Link`` is such a
connection: ``use`` runs a piece of work on it, opening it again first when the last
use lost it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import StoreError
from .connection import Store
from .dsn import redact
from .sql import Connection, lost

log = logging.getLogger("zart_nb")

T = TypeVar("T")

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class Backoff:
    """Delays between attempts: ``first`` doubling up to ``cap``; ``reset`` on success."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first = first
        self.cap = max(first, cap)
        self._next = first

    def delay(self) -> float:
        """The wait before the next attempt (each call doubles the following one)."""
        current = self._next
        self._next = min(self.cap, current * 2)
        return current

    def reset(self) -> None:
        self._next = self.first


class Outage:
    """The database as this process sees it: an outage is logged once when a thread
    first loses it, and once when a thread first reaches it again.

    Both at INFO: a worker's log shows them (it logs zart-nb's INFO messages); in a
    kernel or a script, the body that lost its connection says so itself, with one
    StoreError, and the threads that reconnect behind it stay quiet.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = redact(dsn)
        self._lock = threading.Lock()
        self.since: float | None = None  # monotonic time the outage was noticed
        self.attempts = 0
        self.recovered_at = 0.0

    def failed(self, who: str, error: StoreError, began: float) -> None:
        """An attempt that ``began`` (monotonic) failed: a new outage unless one is under
        way, or the attempt began before another thread saw the database back."""
        with self._lock:
            if began < self.recovered_at:
                return
            self.attempts += 1
            if self.since is not None:
                return
            self.since = time.monotonic()
        log.info("zart-nb: %s lost the database %s (%s); reconnecting", who, self.dsn,
                    _reason(error))

    def succeeded(self, who: str) -> None:
        with self._lock:
            if self.since is None:
                return
            self.recovered_at = time.monotonic()
            seconds, attempts = self.recovered_at - self.since, self.attempts
            self.since, self.attempts = None, 0
        log.info("zart-nb: %s is back on the database %s after %.1f s (%d failed attempts)",
                 who, self.dsn, seconds, attempts)


def _reason(error: StoreError) -> str:
    """What the driver said (the StoreError's own message names the connection again)."""
    said = str(error.__cause__ or error).strip().splitlines()
    return said[0] if said else type(error).__name__


_outages: dict[str, Outage] = {}
_outages_lock = threading.Lock()


def outage_of(store: Store) -> Outage:
    """The outage record of ``store``'s database in this process."""
    with _outages_lock:
        found = _outages.get(store.dsn)
        if found is None:
            found = _outages[store.dsn] = Outage(store.dsn)
        return found


class Link:
    """A connection of its own to ``store``'s database, opened again after it was lost.

    Used by one thread. ``setup`` runs on every new connection, before any work (a
    session setting; a worker taking its children back). A lost connection is an
    outage (logged once per process); any other refusal (a full disk, a revoked right)
    is logged once, with its traceback, until a use succeeds again.
    """

    def __init__(self, store: Store, who: str, *, cap: float = MAX_DELAY,
                 setup: Callable[[Connection], None] | None = None) -> None:
        self.store = store
        self.who = who
        self.outage = outage_of(store)
        self.backoff = Backoff(cap=cap)
        self.setup = setup
        self.conn: Connection | None = None
        self.retry_at: float | None = None  # set while the last use failed
        self.refused = False  # a refusal was logged since the last success

    @property
    def down(self) -> bool:
        """True while the last use failed (the database away, or refusing)."""
        return self.retry_at is not None

    @property
    def ready(self) -> bool:
        """False while waiting out the backoff after a failed use."""
        return self.retry_at is None or time.monotonic() >= self.retry_at

    def pause(self) -> float:
        """Seconds left before the next attempt is due (0 when it is)."""
        return 0.0 if self.retry_at is None else max(0.0, self.retry_at - time.monotonic())

    def use(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)``, connecting first if needed.

        A connection found dead at its first use since it was opened (the server
        restarted while it was idle) is replaced once at once. A StoreError is noted
        and re-raised: the caller tries again after ``pause()``.
        """
        began = time.monotonic()
        conn = self.conn
        reopened = conn is None or conn.closed
        try:
            if conn is None or reopened:
                result = work(self._open())
            else:
                try:
                    result = work(conn)
                except StoreError as exc:
                    if not lost(exc.sqlstate):
                        raise
                    self.close()
                    reopened = True
                    result = work(self._open())
        except StoreError as exc:
            self._failed(exc, began)
            raise
        if reopened or self.retry_at is not None:
            self._succeeded()
        return result

    def _open(self) -> Connection:
        conn = self.store.connect()
        try:
            if self.setup is not None:
                self.setup(conn)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    def _failed(self, error: StoreError, began: float) -> None:
        if lost(error.sqlstate):
            self.close()
            self.outage.failed(self.who, error, began)
        elif not self.refused:
            self.refused = True
            log.error("zart-nb: %s: the database %s refused (%s); trying again", self.who,
                      self.outage.dsn, error, exc_info=error)
        self.retry_at = time.monotonic() + self.backoff.delay()

    def _succeeded(self) -> None:
        self.outage.succeeded(self.who)
        self.backoff.reset()
        self.retry_at = None
        self.refused = False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
