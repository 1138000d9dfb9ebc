"""The threads that keep a claim: a body's lease heartbeat, the watch that writes down
which step is in flight, and a worker's heartbeat over the children it holds.

Each is a ``Ticker``: a daemon thread that calls ``tick`` every ``interval`` (or after
the delay a tick returns: a backoff while the database is away) until it is stopped.
A StoreError is the database's business and each tick decides what it means; any other
exception is a bug of ours, logged with its traceback (never mistaken for a lost
lease), and the thread goes on. The heartbeats hold a connection of their own that
comes back after the database does (``store.reconnect.Link``): a pool would make them
wait for its timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol, TypeVar

from ..errors import StoreError
from ..store import journal as journal_db
from ..store import queue as queue_db
from ..store import runs as runs_db
from ..store.connection import Store
from ..store.reconnect import MAX_DELAY, Link
from ..store.sql import Connection

log = logging.getLogger("zart_nb")


class Owned(Protocol):
    """What the lease threads see of an execution."""

    stop_reason: str | None

    @property
    def inflight(self) -> tuple[str, int, float] | None: ...

    @property
    def run_id(self) -> str: ...

    @property
    def owner(self) -> str: ...


T = TypeVar("T", bound="Ticker")


class Ticker:
    def __init__(self, name: str, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)

    def start(self: T) -> T:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> float | None:
        """One round; the seconds until the next one when not ``interval``."""
        raise NotImplementedError

    def _loop(self) -> None:
        pause: float | None = self.interval
        while not self._stop.wait(self.interval if pause is None else pause):
            try:
                pause = self.tick()
            except Exception:
                log.exception("zart-nb: %s failed; it goes on", self._thread.name)
                pause = None
        self.closed()

    def closed(self) -> None:
        """Called once the thread stops."""


class Heartbeat(Ticker):
    """Renews the run's lease every third of its length; notices cancels and lost leases."""

    def __init__(self, store: Store, ex: Owned) -> None:
        super().__init__("zart-heartbeat", store.settings.lease_seconds / 3)
        self.ex = ex
        self.lease = store.settings.lease_seconds
        self.last_ok = time.monotonic()
        self.link = Link(store, f"the heartbeat of run {ex.run_id!r}",
                         cap=min(MAX_DELAY, self.interval))

    def tick(self) -> float | None:
        try:
            status = self.link.use(self._renew)
        except StoreError:  # unreachable: keep trying until the lease is gone
            if time.monotonic() - self.last_ok > self.lease:
                self.ex.stop_reason = "lost its lease (the database is unreachable)"
            return self.link.pause()
        self.last_ok = time.monotonic()
        if status is None:
            self.ex.stop_reason = "another process took the run over (this one lost its lease)"
        elif status == "cancelled":
            self.ex.stop_reason = "cancelled"
        return None

    def _renew(self, conn: Connection) -> str | None:
        return runs_db.renew_lease(conn, self.ex.run_id, self.ex.owner, self.lease)

    def closed(self) -> None:
        self.link.close()


class ChildLeases(Ticker):
    """A worker's heartbeat: renews the leases of the children it holds, and puts back
    in the queue the children of workers whose leases expired."""

    def __init__(self, store: Store, worker: str) -> None:
        super().__init__("zart-worker-lease", store.settings.lease_seconds / 3)
        self.worker = worker
        self.lease = store.settings.lease_seconds
        self.link = Link(store, f"the lease heartbeat of worker {worker}",
                         cap=min(MAX_DELAY, self.interval))

    def tick(self) -> float | None:
        try:
            self.link.use(self._renew)
        except StoreError:  # the database is away: leases are renewed as soon as it is back
            return self.link.pause()
        return None

    def _renew(self, conn: Connection) -> None:
        queue_db.renew_leases(conn, self.worker, self.lease)
        queue_db.requeue_expired(conn, self.lease)

    def closed(self) -> None:
        self.link.close()


class InflightWatch(Ticker):
    """Writes down which step the body executes, once it has run for a moment.

    So that a step killed mid-way is known to have had an attempt, the run row notes the
    step in flight. Writing that before every step would add a round trip to each one;
    instead this thread looks every ``GRACE`` seconds and notes a step that has been
    running longer than that. A step killed within ``GRACE`` of its start runs again with
    its attempt under-counted by one; it still runs again (at-least-once).
    """

    GRACE = 0.02
    RETRY_SECONDS = 1.0  # after a failed write: the database is away, do not hammer it

    def __init__(self, store: Store, ex: Owned) -> None:
        super().__init__("zart-inflight", self.GRACE)
        self.store = store
        self.ex = ex
        self.noted: tuple[str, int, float] | None = None
        self.conn: Connection | None = None
        self.quiet_until = 0.0

    def tick(self) -> float | None:
        current = self.ex.inflight
        now = time.monotonic()
        if (current is None or current == self.noted or now - current[2] < self.GRACE
                or now < self.quiet_until):
            return None
        try:
            if self.conn is None:
                self.conn = self.store.connect()
            journal_db.mark_inflight(self.conn, self.ex.run_id, self.ex.owner, current[0],
                                     current[1])
        except StoreError:  # the body's own writes will say so; try again later
            self.closed()
            self.quiet_until = now + self.RETRY_SECONDS
            return None
        self.noted = current
        return None

    def closed(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
