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
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import psycopg

from .. import codec
from ..config import configure, settings
from ..errors import PayloadError, StepFailed, StepTimedOut, StoreError, ZartError
from ..store import queries, results
from ..store.connection import Store, get_store
from ..store.notify import WORK_CHANNEL, listener
from .execute import HOST, execute_claimed, new_owner
from .journal import StepContext, _in_step, encode_error, format_traceback, one_line, split_payload, utcnow
from .model import RetryPolicy
from .steps import _TimedOut, call_with_timeout

POLL_SECONDS = 2.0
FLUSH_SECONDS = 0.02  # finished results wait at most this long to be committed together
QUICK_CHILD = 0.02  # children faster than this are claimed in batches
BATCH_PER_SLOT = 64


@dataclass
class _Done:
    row: dict
    stored: results.Encoded | None = None  # the pickled result when the child succeeded
    error: BaseException | None = None
    error_kind: str = "business"
    cause: BaseException | None = None
    retry_at: Any = None
    seconds: float = 0.0


class Worker:
    def __init__(self, store: Store, *, concurrency: int = 1, namespace: str | None = None,
                 parent_pid: int | None = None) -> None:
        if concurrency < 1:
            raise ZartError(f"worker concurrency must be at least 1, not {concurrency}")
        self.store = store
        self.concurrency = concurrency
        self.namespace = namespace or store.settings.namespace
        self.parent_pid = parent_pid
        self.name = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.lease = store.settings.lease_seconds
        self._avg_seconds = 1.0
        self._bodies: list[threading.Thread] = []
        self._functions: dict[bytes, Callable] = {}
        self._bodies_checked = 0.0
        self._notes = None  # the work channel's listener, once running

    # -- the claim loop --------------------------------------------------------
    def run(self) -> None:
        notes = self._notes = listener(self.store, WORK_CHANNEL)
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True, name="zart-worker-lease")
        heartbeat.start()
        claim_conn = self.store.connect()
        result_conn = self.store.connect()
        queries.execute(claim_conn, "set_durability", value="off")  # a lost claim is re-run
        queued: deque[dict] = deque()
        running: dict[Future, dict] = {}
        finished: list[_Done] = []
        finished_since = 0.0  # when the oldest result not committed yet was ready
        # The work token when a look for work last came back short (the queue drained):
        # the next look waits for a notification on the work channel or the slow poll,
        # so that a worker with idle slots and busy ones does not query in a loop.
        idle_token, idle_since = None, 0.0
        retry_at = float("inf")  # when the earliest delayed retry becomes ready
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="zart-child") as pool, \
                claim_conn, result_conn:
            try:
                while not self._should_stop():
                    token = notes.token(self.namespace)
                    now = time.monotonic()
                    fresh = (token != idle_token or now - idle_since >= POLL_SECONDS
                             or now >= retry_at)
                    room = self._room(len(queued) + len(running))
                    # Claim when the queue runs low, a batch at a time (not one child per
                    # freed slot, which costs a claim query per child).
                    looked = room > 0 and fresh and len(queued) < self.concurrency
                    claimed = []
                    if looked:
                        claimed = queries.all_rows(
                            claim_conn, "claim_children", namespace=self.namespace,
                            worker=self.name, limit=room, lease=self.lease)
                        queued.extend(claimed)
                    while queued and len(running) < self.concurrency:
                        row = queued.popleft()
                        running[pool.submit(self._run_child, row)] = row
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
                    if finished and ((not running and not queued) or len(finished) >= 64
                                     or time.monotonic() - finished_since > FLUSH_SECONDS):
                        self._commit(result_conn, finished)
                        finished = []
                    drained = looked and len(claimed) < room
                    started_body = False
                    if drained or time.monotonic() - self._bodies_checked > POLL_SECONDS:
                        started_body = self._claim_body(claim_conn)
                    if drained and not started_body:
                        idle_token, idle_since = token, time.monotonic()
                        retry_at = idle_since + self._next_retry_in(claim_conn)
                    if not running and not queued and idle_token == token:
                        # nothing to do, and the last look found the queue drained: sleep
                        # until work is announced (or the slow poll). Having just finished
                        # a batch is no reason to wait: more may be queued.
                        now = time.monotonic()
                        left = min(POLL_SECONDS - (now - idle_since), retry_at - now)
                        notes.wait(self.namespace, token, max(0.0, min(POLL_SECONDS, left)))
            finally:
                self._give_back(claim_conn, queued)
                for future in list(running):
                    finished.append(future.result())  # finish what was started
                if finished:
                    self._commit(result_conn, finished)

    # -- detached bodies ---------------------------------------------------------
    def _claim_body(self, conn: psycopg.Connection) -> bool:
        """Start executing a detached run, on a thread of its own, if one is waiting.

        Body threads are daemons: a worker that stops abandons its bodies, whose runs
        another worker takes over when their leases expire (at-least-once).
        """
        self._bodies_checked = time.monotonic()
        self._bodies = [t for t in self._bodies if t.is_alive()]
        if len(self._bodies) >= self.concurrency:
            return False
        owner = new_owner()
        row = queries.one(conn, "claim_detached_run", owner=owner, host=HOST, pid=os.getpid(),
                          lease=self.lease, namespace=self.namespace)
        if row is None:
            return False
        thread = threading.Thread(target=self._run_body, args=(row, owner), daemon=True,
                                  name=f"zart-body-{row['run_id'][:20]}")
        thread.start()
        self._bodies.append(thread)
        return True

    def _run_body(self, row: dict, owner: str) -> None:
        try:
            execute_claimed(self.store, row, owner)
        except BaseException as exc:  # the run holds the failure; the worker goes on
            print(f"zart worker {self.name}: run {row['run_id']!r} ended: {one_line(exc)}",
                  file=sys.stderr)

    def _room(self, held: int) -> int:
        per_slot = BATCH_PER_SLOT if self._avg_seconds < QUICK_CHILD else 1
        return self.concurrency * per_slot - held

    def stop(self) -> None:
        """Stop claiming (SIGTERM, SIGINT): held children are finished or given back.

        Wakes the claim loop if it sleeps on the work channel, so that a worker (and
        a script whose local pool stops at exit) does not wait for the slow poll.
        """
        self.stopping.set()
        if self._notes is not None:
            self._notes._bump(self.namespace)  # (the listener has no public wake-up)

    def _should_stop(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.stopping.set()
        return self.stopping.is_set()

    # -- one child ---------------------------------------------------------------
    def _run_child(self, row: dict) -> _Done:
        name, attempt = row["name"], row["attempts"]
        started = time.monotonic()
        try:
            pickled_fn, args, kwargs = codec.decode(row["task"], what=f"child {name!r}")
            fn = self._function(pickled_fn)
        except PayloadError as exc:
            return _Done(row, error=StepFailed(str(exc), step=name, reason="not_loadable"),
                         error_kind="framework")
        except Exception as exc:  # unpickling imports the function's module
            return _Done(row, error=StepFailed(
                f"child {name!r}: cannot load its function on worker {self.name}: "
                f"{one_line(exc)}; install that module on the workers, or send it with "
                "zart_nb.ship(module) before scheduling", step=name, reason="not_loadable"),
                error_kind="framework")
        token = _in_step.set(StepContext(row["run_id"], None, name, attempt))
        try:
            value = call_with_timeout(fn, args, kwargs, row["timeout_s"])
        except _TimedOut:
            return _Done(row, error=StepTimedOut(f"child {name!r} timed out after "
                                                 f"{row['timeout_s']:g} s", step=name,
                                                 reason="timed_out"), error_kind="framework")
        except Exception as exc:
            return self._failure(row, exc, time.monotonic() - started)
        finally:
            _in_step.reset(token)
        seconds = time.monotonic() - started
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds
        try:
            stored = results.encode(self.store, value, what="result", owner=f"child {name!r}")
        except PayloadError as exc:
            return _Done(row, error=StepFailed(str(exc), step=name, reason="not_picklable"),
                         error_kind="framework")
        except StoreError as exc:  # the database did not take it (a full disk): not committed
            return _Done(row, error=StepFailed(str(exc), step=name, reason="not_stored"),
                         error_kind="framework")
        return _Done(row, stored=stored, seconds=seconds)

    def _next_retry_in(self, conn: psycopg.Connection) -> float:
        seconds = queries.one(conn, "next_retry_in", namespace=self.namespace)["seconds"]
        return POLL_SECONDS if seconds is None else max(0.0, seconds)

    def _function(self, pickled: bytes) -> Callable:
        """The child's function, unpickled once per worker (the task's signature, already
        checked, covers these bytes)."""
        key = codec.digest(pickled)
        fn = self._functions.get(key)
        if fn is None:
            if len(self._functions) >= 256:  # a long-lived worker meets many notebooks
                self._functions.clear()
            fn = self._functions[key] = pickle.loads(pickled)
        return fn

    def _failure(self, row: dict, exc: Exception, seconds: float) -> _Done:
        policy = RetryPolicy(**row["retry"]) if row["retry"] else RetryPolicy()
        attempt, name = row["attempts"], row["name"]
        if attempt < row["max_attempts"]:
            delay = policy.delay_before(max(1, attempt - row["max_attempts"] + policy.max_attempts))
            return _Done(row, error=exc, retry_at=utcnow() + timedelta(seconds=delay), seconds=seconds)
        if policy.retries:
            error = StepFailed(f"child {name!r} failed after {attempt} attempts; last: "
                               f"{one_line(exc)}", step=name, reason="retries_exhausted")
            error.__cause__ = exc
            return _Done(row, error=error, error_kind="framework", cause=exc, seconds=seconds)
        return _Done(row, error=exc, seconds=seconds)

    # -- committing ---------------------------------------------------------------
    def _commit(self, conn: psycopg.Connection, finished: list[_Done]) -> None:
        ok = [d for d in finished if d.error is None]
        if ok:
            split = [split_payload(d.stored) for d in ok]
            queries.execute(
                conn, "complete_children", worker=self.name,
                run_ids=[d.row["run_id"] for d in ok],
                generations=[d.row["generation"] for d in ok],
                names=[d.row["name"] for d in ok],
                results=[inline for inline, _, _ in split],
                hashes=[digest for _, digest, _ in split],
                sizes=[d.stored.size for d in ok],
                payload_hashes=[digest for _, digest, data in split if data is not None],
                payload_data=[data for _, _, data in split if data is not None])
        for d in finished:
            if d.error is not None:
                queries.execute(
                    conn, "fail_child", run_id=d.row["run_id"], generation=d.row["generation"],
                    name=d.row["name"], attempt=d.row["attempts"], worker=self.name,
                    error=one_line(d.error), error_kind=d.error_kind,
                    error_payload=encode_error(d.error),
                    traceback=format_traceback(d.cause or d.error), retry_at=d.retry_at)

    def _give_back(self, conn: psycopg.Connection, queued: deque) -> None:
        if queued:
            rows = list(queued)
            queries.execute(conn, "release_children", worker=self.name,
                            run_ids=[r["run_id"] for r in rows],
                            generations=[r["generation"] for r in rows],
                            names=[r["name"] for r in rows])
            queued.clear()

    # -- leases ------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.lease / 3):
            try:
                with self.store.connection() as conn:
                    queries.execute(conn, "renew_child_leases", worker=self.name, lease=self.lease)
                    queries.execute(conn, "requeue_expired_children")
            except ZartError:
                continue  # the database is away; leases are renewed when it is back


def run_worker(*, concurrency: int = 1, namespace: str | None = None,
               parent_pid: int | None = None, store: Store | None = None) -> None:
    """Run children until SIGTERM/SIGINT (or the parent process ``parent_pid`` dies)."""
    if store is None:
        configure(settings().evolve(workers=0))  # bodies it executes use the workers, not a pool
        store = get_store()
    worker = Worker(store, concurrency=concurrency, namespace=namespace, parent_pid=parent_pid)
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(worker)
    worker.run()


def _stop_on_signals(worker: Worker) -> None:
    """SIGTERM and SIGINT stop ``worker``, from a thread of their own.

    Not from the Python handler: it runs in the main thread between two bytecodes, maybe
    while that thread holds the very lock ``stop()`` takes (the stopping Event's, which
    the claim loop sets when the parent is gone; the listener's), and then waits for
    itself forever. A parent's death sends SIGTERM just as the loop notices it: a
    deadlock found by the chaos suite. The handler does nothing; the signal's number,
    written by the interpreter to the wake-up socket, wakes the thread that stops.
    """
    import socket

    read, write = socket.socketpair()
    write.setblocking(False)
    worker._signal_sockets = (read, write)  # kept open: a closed fd number gets reused
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
        self.procs: list[subprocess.Popen] = []

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

    def status(self) -> list[dict]:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zart_nb.engine.worker")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--namespace")
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with_parent()
        if os.getppid() != args.parent:
            return
    run_worker(concurrency=args.concurrency, namespace=args.namespace, parent_pid=args.parent)


if __name__ == "__main__":
    main()
