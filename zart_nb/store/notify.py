"""LISTEN/NOTIFY wake-ups, so that waiting never polls the database in a tight loop.

One listening connection per process and channel; waiters take a ``token`` (a counter
per key) *before* reading the database, then ``wait(key, token, timeout)`` returns at
once if a notification for ``key`` arrived in between. The timeout is the slow poll
that covers a lost connection: the listener reconnects with a backoff (the outage
logged once), and wakes every waiter when it listens again, since anything may have
happened meanwhile. ``wait_async`` is the same wait for code on an event
loop: the listening thread completes a future on that loop, no thread is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict

from psycopg import sql as pgsql

from ..errors import StoreError
from .connection import Store
from .reconnect import Link
from .sql import Connection, translated

log = logging.getLogger("zart_nb")

RUN_CHANNEL = "zart_run"  # payload: run_id
WORK_CHANNEL = "zart_work"  # payload: namespace


class Listener:
    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel
        self._counts: dict[str, int] = defaultdict(int)
        self._futures: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"zart-listen-{channel}")
        self._thread.start()
        self._ready.wait(10)

    def token(self, key: str) -> int:
        with self._cond:
            return self._counts[key]

    def wait(self, key: str, token: int, timeout: float) -> bool:
        """True when ``key`` was notified since ``token`` was taken."""
        with self._cond:
            return self._cond.wait_for(lambda: self._counts[key] != token, timeout)

    async def wait_async(self, key: str, token: int, timeout: float) -> bool:
        """``wait`` for a coroutine: the event loop goes on meanwhile."""
        future = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._counts[key] != token:
                return True
            self._futures[key].append(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                waiting = self._futures.get(key)
                if waiting is not None and future in waiting:
                    waiting.remove(future)

    def close(self) -> None:
        self._stopped.set()

    def wake(self, key: str) -> None:
        """Wake the waiters on ``key`` now, as a notification would (a worker stopping)."""
        self._bump(key)

    def _loop(self) -> None:
        link = Link(self.store, f"the listener on {self.channel}", setup=self._listen)
        try:
            while not self._stopped.is_set():
                try:
                    link.use(self._drain)
                    continue
                except StoreError:  # logged by the link; waiters fall back to their timeouts
                    pause = link.pause()
                except Exception:  # a bug of ours: logged, never taken for an outage
                    log.exception("zart-nb: the listener on %s failed; it goes on", self.channel)
                    pause = 1.0
                self._ready.set()
                self._stopped.wait(pause)
        finally:
            link.close()

    def _listen(self, conn: Connection) -> None:
        with translated(conn):
            conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel)))
        self._ready.set()
        self._bump_all()  # anything may have happened while not listening

    def _drain(self, conn: Connection) -> None:
        """Wait up to a second for notifications (so that ``close`` is seen soon)."""
        with translated(conn):
            for note in conn.notifies(timeout=1.0):
                self._bump(note.payload)

    def _bump(self, key: str) -> None:
        with self._cond:
            self._counts[key] += 1
            self._cond.notify_all()
            _wake(self._futures.pop(key, []))

    def _bump_all(self) -> None:
        with self._cond:
            for key in self._counts:
                self._counts[key] += 1
            self._cond.notify_all()
            for futures in self._futures.values():
                _wake(futures)
            self._futures.clear()


def _wake(futures: list[asyncio.Future[None]]) -> None:
    """Complete ``futures`` from this (the listening) thread, each on its own loop."""
    for future in futures:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            future.get_loop().call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_lock = threading.Lock()


def listener(store: Store, channel: str = RUN_CHANNEL) -> Listener:
    """``store``'s listener on ``channel``; it stops when the store is closed."""
    with _lock:
        found = store.listeners.get(channel)
        if found is None:
            found = store.listeners[channel] = Listener(store, channel)
        return found
