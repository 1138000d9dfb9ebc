"""Workers: processes that run scheduled children for any run, on any machine.

A worker claims ready children with ``FOR UPDATE SKIP LOCKED`` (a batch when children
are quick), runs them on ``concurrency`` threads, and commits finished results in
batches; a heartbeat renews the leases of what it holds and puts back the children of
workers whose leases expired. SIGTERM stops claiming, gives back what it had not
started, and finishes what it had. ``LocalPool`` is the pool of worker processes a
notebook kernel or a script starts for itself; they stop when their parent dies.

``python -m zart_nb.engine.worker [--concurrency N] [--namespace NS] [--parent PID]``
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import codec
from ..config import configure, settings
from ..errors import PayloadError, StepFailed, StoreError, UsageError
from ..frames import format_users_traceback
from ..store import journal as journal_db
from ..store import payloads
from ..store import queue as queue_db
from ..store import runs as runs_db
from ..store.connection import Store, get_store
from ..store.notify import WORK_CHANNEL, Listener, listener
from ..store.reconnect import Backoff, Link
from ..store.records import ChildResult, ChildTask, Placed, StoredBody
from ..store.sql import Connection, lost
from . import attempts
from .execute import HOST, execute_claimed, new_owner
from .execution import one_line, step_scope
from .leases import ChildLeases
from .model import StepContext
from .remote import FunctionCache, call_child
from .timeouts import TimedOut

log = logging.getLogger("zart_nb")

T = TypeVar("T")

POLL_SECONDS = 2.0
FLUSH_SECONDS = 0.02  # finished results wait at most this long to be committed together
QUICK_CHILD = 0.02  # children faster than this are claimed in batches
BATCH_PER_SLOT = 64
# Children faster than this have the next one claimed while they run: it starts as soon
# as a slot frees, not after a commit and a claim (a 20 ms child lost a fifth of its
# worker's time to them). Slower ones are claimed one per slot, to spread them out.
READY_AHEAD_UNDER = 1.0


@dataclass
class _Done:
    row: ChildTask
    stored: Placed | None = None  # the result when the child succeeded (placed, stored)
    error: BaseException | None = None
    error_kind: str = "business"
    cause: BaseException | None = None
    retry_at: Any = None
    seconds: float = 0.0


class Worker:
    def __init__(self, store: Store, *, concurrency: int = 1, namespace: str | None = None,
                 parent_pid: int | None = None) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise UsageError(f"worker concurrency must be a whole number >= 1, not {concurrency!r}")
        self.store = store
        self.concurrency = concurrency
        self.namespace = namespace or store.settings.namespace
        self.parent_pid = parent_pid
        self.name = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.lease = store.settings.lease_seconds
        self._avg_seconds = 1.0
        self._bodies: list[threading.Thread] = []
        self._functions = FunctionCache()
        self._bodies_checked = 0.0
        self._notes: Listener | None = None  # the work channel's listener, once running
        self.signal_sockets: tuple[socket.socket, socket.socket] | None = None
        # The children this worker claimed and has not committed an outcome for (queued,
        # running, or finished while the database was away), by key: their latest claim.
        self._held: dict[tuple[str, int, str], ChildTask] = {}
        # Claims and results share one connection: after it was lost, its setup takes
        # the held children back before anything else is written or claimed.
        self._db = Link(store, f"worker {self.name}", setup=self._reconnected)

    # -- the claim loop --------------------------------------------------------
    def run(self) -> None:
        notes = self._notes = listener(self.store, WORK_CHANNEL)
        leases = ChildLeases(self.store, self.name).start()
        queued: deque[ChildTask] = deque()
        running: dict[Future[_Done], ChildTask] = {}
        finished: list[_Done] = []
        finished_since = 0.0  # when the oldest result not committed yet was ready
        # The work token when a look for work last came back short (the queue drained):
        # the next look waits for a notification on the work channel or the slow poll,
        # so that a worker with idle slots and busy ones does not query in a loop.
        idle_token, idle_since = None, 0.0
        retry_at = float("inf")  # when the earliest delayed retry becomes ready
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="zart-child") as pool:
            try:
                while not self._should_stop():
                    token = notes.token(self.namespace)
                    if self._db.down and self._db.ready:  # is the database back?
                        self._attempt(self._renew_leases, None)
                    now = time.monotonic()
                    fresh = (token != idle_token or now - idle_since >= POLL_SECONDS
                             or now >= retry_at)
                    # Children claimed ahead start before the next claim's round trip.
                    self._start(pool, queued, running)
                    room = self._room(len(queued) + len(running))
                    # Claim when the queue runs low, a batch at a time (not one child per
                    # freed slot, which costs a claim query per child).
                    looked = room > 0 and fresh and len(queued) < self.concurrency
                    claimed = self._claim(room, queued) if looked else None
                    looked = claimed is not None
                    self._start(pool, queued, running)
                    if running:
                        done, _ = wait_futures(list(running), timeout=FLUSH_SECONDS,
                                               return_when=FIRST_COMPLETED)
                        if done and not finished:
                            finished_since = time.monotonic()
                        for future in done:
                            running.pop(future)
                            finished.append(future.result())
                    # Commit together what a batch produced: when the worker runs dry, or
                    # when the oldest result has waited FLUSH_SECONDS, or 64 are ready.
                    # Results that could not be committed (the database is away) are
                    # kept, and committed once it is back.
                    if finished and ((not running and not queued) or len(finished) >= 64
                                     or time.monotonic() - finished_since > FLUSH_SECONDS):
                        finished = self._commit(finished)
                    drained = looked and len(claimed or ()) < room
                    started_body = False
                    if drained or time.monotonic() - self._bodies_checked > POLL_SECONDS:
                        started_body = self._attempt(self._claim_body, False)
                    if drained and not started_body:
                        idle_token, idle_since = token, time.monotonic()
                        retry_at = idle_since + self._attempt(self._next_retry_in, POLL_SECONDS)
                    if not running and self._db.down:
                        # the database is away: nothing to do before the next attempt
                        notes.wait(self.namespace, token, self._db.pause())
                    elif not running and not queued and idle_token == token:
                        # nothing to do, and the last look found the queue drained: sleep
                        # until work is announced (or the slow poll). Having just finished
                        # a batch is no reason to wait: more may be queued.
                        now = time.monotonic()
                        left = min(POLL_SECONDS - (now - idle_since), retry_at - now)
                        notes.wait(self.namespace, token, max(0.0, min(POLL_SECONDS, left)))
            finally:
                self._give_back(queued)
                for future in list(running):
                    finished.append(future.result())  # finish what was started
                self._last_commit(finished)
                leases.stop()
                self._db.close()

    def _start(self, pool: ThreadPoolExecutor, queued: deque[ChildTask],
               running: dict[Future[_Done], ChildTask]) -> None:
        """Start queued children in the free slots. While the database is away none is
        started: one that finished meanwhile could not say so, and its lease is not
        renewed."""
        while queued and len(running) < self.concurrency and not self._db.down:
            row = self._held.get(_key(queued.popleft()))
            if row is not None:  # not taken over while the database was away
                running[pool.submit(self._run_child, row)] = row

    def _attempt(self, work: Callable[[Connection], T], otherwise: T) -> T:
        """``work`` on the worker's connection; ``otherwise`` while the database is away
        or refuses (the link logs it once, and is tried again after its backoff)."""
        if not self._db.ready:
            return otherwise
        try:
            return self._db.use(work)
        except StoreError:
            return otherwise

    def _renew_leases(self, conn: Connection) -> None:
        queue_db.renew_leases(conn, self.name, self.lease)

    def _claim(self, room: int, queued: deque[ChildTask]) -> list[ChildTask] | None:
        """Claim up to ``room`` children into ``queued``; None when the database is away.

        A child this worker still holds can come back (its lease ran out while the
        worker was frozen, and nobody else claimed it): it is not run again here; the
        new claim only replaces the old one, whose attempt the commit is fenced by.
        """
        claimed = self._attempt(lambda conn: queue_db.claim(
            conn, namespace=self.namespace, worker=self.name, limit=room, lease=self.lease), None)
        for row in claimed or ():
            if _key(row) not in self._held:
                queued.append(row)
            self._held[_key(row)] = row
        return claimed

    def _reconnected(self, conn: Connection) -> None:
        """Setup of each new connection of the claim loop: the session's claims do not
        wait for the WAL flush (a lost claim is re-run), and, after a lost connection,
        the children held are taken back before anything else is claimed or written."""
        journal_db.set_durability(conn, synchronous=False)
        if not self._held:
            return
        kept = queue_db.retake(conn, self.name, self.lease, list(self._held.values()))
        lost = [key for key in self._held if key not in kept]
        for key, attempt in kept.items():
            self._held[key] = dataclasses.replace(self._held[key], attempts=attempt)
        for key in lost:
            del self._held[key]
        if lost:
            log.warning("zart-nb: worker %s: %d children it held were taken over while it "
                        "was away from the database (claimed by another worker, cancelled "
                        "or changed); their outcomes here are dropped", self.name, len(lost))

    # -- detached bodies ---------------------------------------------------------
    def _claim_body(self, conn: Connection) -> bool:
        """Start executing a detached run, on a thread of its own, if one is waiting.

        Body threads are daemons: a worker that stops abandons its bodies, whose runs
        another worker takes over when their leases expire (at-least-once).
        """
        self._bodies_checked = time.monotonic()
        self._bodies = [t for t in self._bodies if t.is_alive()]
        if len(self._bodies) >= self.concurrency:
            return False
        owner = new_owner()
        row = runs_db.claim_detached(conn, owner=owner, host=HOST, pid=os.getpid(),
                                     lease=self.lease, namespace=self.namespace)
        if row is None:
            return False
        thread = threading.Thread(target=self._run_body, args=(row, owner), daemon=True,
                                  name=f"zart-body-{row.run_id[:20]}")
        thread.start()
        self._bodies.append(thread)
        return True

    def _run_body(self, row: StoredBody, owner: str) -> None:
        try:
            execute_claimed(self.store, row, owner)
        except BaseException as exc:  # the run holds the failure; the worker goes on
            print(f"zart worker {self.name}: run {row.run_id!r} ended: {one_line(exc)}",
                  file=sys.stderr)

    def _room(self, held: int) -> int:
        if self._avg_seconds < QUICK_CHILD:
            per_slot = BATCH_PER_SLOT
        else:
            per_slot = 2 if self._avg_seconds < READY_AHEAD_UNDER else 1
        return self.concurrency * per_slot - held

    def stop(self) -> None:
        """Stop claiming (SIGTERM, SIGINT): held children are finished or given back.

        Wakes the claim loop if it sleeps on the work channel, so that a worker (and
        a script whose local pool stops at exit) does not wait for the slow poll.
        """
        self.stopping.set()
        if self._notes is not None:
            self._notes.wake(self.namespace)

    def _should_stop(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.stopping.set()
        return self.stopping.is_set()

    # -- one child ---------------------------------------------------------------
    def _run_child(self, row: ChildTask) -> _Done:
        name, attempt = row.name, row.attempts
        started = time.monotonic()
        try:
            pickled_fn, args, kwargs = codec.decode(row.task, what=f"child {name!r}")
            fn = self._functions.load(pickled_fn)  # once per worker (the signature covers it)
        except PayloadError as exc:
            return _Done(row, error=StepFailed(str(exc), step=name, reason="not_loadable"),
                         error_kind="framework")
        except Exception as exc:  # unpickling imports the function's module
            return _Done(row, error=StepFailed(
                f"child {name!r}: cannot load its function on worker {self.name}: "
                f"{one_line(exc)}; install that module on the workers, or send it with "
                "zart_nb.ship(module) before scheduling", step=name, reason="not_loadable"),
                error_kind="framework")
        try:
            with step_scope(StepContext(row.run_id, None, name, attempt)):
                value = call_child(fn, args, kwargs, row.timeout_s)
        except TimedOut as timed_out:  # its traceback: where the deadline found the child
            verdict = attempts.timed_out(name, row.timeout_s)
            return _Done(row, error=verdict.error.with_traceback(timed_out.__traceback__),
                         error_kind=verdict.kind)
        except Exception as exc:
            return self._failure(row, exc, time.monotonic() - started)
        seconds = time.monotonic() - started
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds
        try:
            stored = payloads.encode(self.store, value, what="result", owner=f"child {name!r}")
        except PayloadError as exc:
            return _Done(row, error=StepFailed(str(exc), step=name, reason="not_picklable"),
                         error_kind="framework")
        except StoreError as exc:  # the database did not take it (a full disk): not committed
            return _Done(row, error=StepFailed(str(exc), step=name, reason="not_stored"),
                         error_kind="framework")
        return _Done(row, stored=stored, seconds=seconds)

    def _next_retry_in(self, conn: Connection) -> float:
        seconds = queue_db.next_retry_in(conn, self.namespace)
        return POLL_SECONDS if seconds is None else max(0.0, seconds)

    def _failure(self, row: ChildTask, exc: Exception, seconds: float) -> _Done:
        verdict = attempts.after_error(row, exc)
        return _Done(row, error=verdict.error, error_kind=verdict.kind, cause=verdict.cause,
                     retry_at=verdict.retry_at, seconds=seconds)

    # -- committing ---------------------------------------------------------------
    def _commit(self, finished: list[_Done]) -> list[_Done]:
        """Commit ``finished`` in one transaction; what could not be committed (the
        database is away, or refused) is returned, to be committed later: a failed
        commit wrote nothing. Each outcome is fenced by this worker's latest claim of
        its child; one whose child was taken over is dropped."""
        mine = [d for d in finished if _key(d.row) in self._held]
        results = [ChildResult(self._held[_key(d.row)], d.stored) for d in mine
                   if d.error is None and d.stored is not None]
        failures = [attempts.record(
            self._held[_key(d.row)], attempts.Verdict(d.error, d.error_kind, d.cause, d.retry_at),
            format_users_traceback(d.cause or d.error)) for d in mine if d.error is not None]
        if mine and self._attempt(lambda conn: queue_db.commit_outcomes(
                conn, self.name, results, failures), None) is None:
            return finished
        for d in mine:
            del self._held[_key(d.row)]
        return []

    def _last_commit(self, finished: list[_Done]) -> None:
        """Commit what a stopping worker finished, trying for up to one lease while the
        database is away (after that, its children are requeued and run again)."""
        deadline = time.monotonic() + self.lease
        while finished and time.monotonic() < deadline:
            finished = self._commit(finished)
            if finished:
                time.sleep(min(self._db.pause(), max(0.0, deadline - time.monotonic())) or 0.01)
        if finished:
            log.warning("zart-nb: worker %s stops without committing %d finished children "
                        "(the database is away); they run again once their leases expire",
                        self.name, len(finished))

    def _give_back(self, queued: deque[ChildTask]) -> None:
        """Release children claimed but not started (tried once: if the database is
        away, their leases expire and any worker takes them)."""
        if queued and self._attempt(
                lambda conn: queue_db.release(conn, self.name, list(queued)), None) is not None:
            for row in queued:
                self._held.pop(_key(row), None)
        queued.clear()


def _key(row: ChildTask) -> tuple[str, int, str]:
    return (row.run_id, row.generation, row.name)


def run_worker(*, concurrency: int = 1, namespace: str | None = None,
               parent_pid: int | None = None, store: Store | None = None) -> None:
    """Run children until SIGTERM/SIGINT (or the parent process ``parent_pid`` dies)."""
    if store is None:
        configure(settings().evolve(workers=0))  # bodies it executes use the workers, not a pool
        store = _store_once_reachable()
    worker = Worker(store, concurrency=concurrency, namespace=namespace, parent_pid=parent_pid)
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(worker)
    worker.run()


def _store_once_reachable() -> Store:
    """The process's store; a worker started while the database is away (a server
    restarting, a machine booting) waits for it, with a backoff, and says so once."""
    backoff = Backoff()
    waited = None
    while True:
        try:
            store = get_store()
        except StoreError as exc:
            if not lost(exc.sqlstate):
                raise
            if waited is None:
                waited = time.monotonic()
                log.warning("zart-nb: worker waiting for the database: %s", exc)
            time.sleep(backoff.delay())
            continue
        if waited is not None:
            log.info("zart-nb: worker reached the database after %.1f s",
                     time.monotonic() - waited)
        return store


def _stop_on_signals(worker: Worker) -> None:
    """SIGTERM and SIGINT stop ``worker``, from a thread of their own.

    Not from the Python handler: it runs in the main thread between two bytecodes, maybe
    while that thread holds the very lock ``stop()`` takes (the stopping Event's, which
    the claim loop sets when the parent is gone; the listener's), and then waits for
    itself forever. A parent's death sends SIGTERM just as the loop notices it: a
    deadlock found by the chaos suite. The handler does nothing; the signal's number,
    written by the interpreter to the wake-up socket, wakes the thread that stops.
    """
    read, write = socket.socketpair()
    write.setblocking(False)
    worker.signal_sockets = (read, write)  # kept open: a closed fd number gets reused
    signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)

    def wake() -> None:
        while read.recv(64):
            worker.stop()

    threading.Thread(target=wake, daemon=True, name="zart-worker-signals").start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


class LocalPool:
    """Worker processes of this kernel or script; each stops when its parent dies."""

    def __init__(self, size: int, *, namespace: str | None = None, store: Store | None = None) -> None:
        self.size = size
        self.store = store or get_store()
        self.namespace = namespace or self.store.settings.namespace
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalPool:
        env = dict(os.environ, ZART_DATABASE_URL=self.store.dsn, ZART_SCHEMA=self.store.schema,
                   ZART_SECRET=codec.secret_key().decode(), ZART_NAMESPACE=self.namespace,
                   ZART_LEASE_SECONDS=str(self.store.settings.lease_seconds))
        self.procs = [p for p in self.procs if p.poll() is None]
        while len(self.procs) < self.size:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "zart_nb.engine.worker", "--parent", str(os.getpid())],
                env=env, stdin=subprocess.DEVNULL))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def status(self) -> list[dict[str, Any]]:
        return [{"pid": p.pid, "alive": p.poll() is None, "returncode": p.returncode}
                for p in self.procs]


_pools: dict[tuple[str, str], LocalPool] = {}


def local_pool(store: Store, size: int, namespace: str) -> LocalPool:
    """This process's pool for ``store``'s database, started (or topped up) to ``size``."""
    key = (store.dsn, namespace)
    pool = _pools.get(key)
    if pool is None:
        if not _pools:
            atexit.register(stop_local_pools)
        pool = _pools[key] = LocalPool(size, namespace=namespace, store=store)
    pool.size = max(pool.size, size)
    return pool.start()


def stop_local_pools() -> None:
    for pool in _pools.values():
        pool.stop()
    _pools.clear()


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (the loop checks getppid too)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _log_to_stderr() -> None:
    """A worker's log is its stderr: zart-nb's messages from INFO up (a database that
    went away, and that it is back)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zart_nb.engine.worker")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--namespace")
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    _log_to_stderr()
    if args.parent is not None:
        _die_with_parent()
        if os.getppid() != args.parent:
            return
    run_worker(concurrency=args.concurrency, namespace=args.namespace, parent_pid=args.parent)


if __name__ == "__main__":
    main()
