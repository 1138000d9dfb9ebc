"""Children run on an executor (Dask, Ray, loky, a process pool) while their rows, leases
and results stay in PostgreSQL.

The waiting body is their worker, named ``executor:<owner>``. It claims the children it
waits for that are queued and ready, or whose holder is gone (``queue.claim_own``); it
checks each task's signature here and submits the plain pickle to the executor with
``remote.run_child``, so the executor's workers need no database and no secret. It
renews the children's leases while they run and commits their results as they come
back, in batches (a large result goes into the payload store once, from this process).

A failed attempt follows the child's retry policy as in zart-nb's own workers
(``attempts``): it goes back to the queue with its delay and is claimed again when due.
A task the executor lost (its worker died: Dask's KilledWorker, a BrokenProcessPool; a
cancelled task) is submitted again with its attempt counted, up to the limit of a lost
lease, then fails as ``worker_lost``. A child that another worker holds (a zart-nb worker
claimed it first) is waited for as with the queue.

Timeouts are kept where the child runs (``remote.run_child`` abandons its call at the
deadline). When the executor says a task runs (``Future.running()``: process pools,
loky) and no answer came by its timeout plus the lease, the body cancels the future and
fails the child as timed out; a task that started cannot be stopped by
``concurrent.futures``: its worker goes on with it and its result is dropped.
"""

from __future__ import annotations

import pickle
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..errors import PayloadError, StoreError, Suspend, UsageError, ZartError
from ..store import payloads
from ..store import queue as queue_db
from ..store.notify import listener
from ..store.records import ChildResult, ChildTask, Placed
from . import attempts, remote
from .attempts import Verdict
from .backends import Backend
from .execution import Execution, one_line, utcnow
from .model import Err, Ok, Outcome, StepContext

FLUSH_SECONDS = 0.02  # results that came back wait at most this long to be committed together
MAX_BATCH = 512
POLL_SECONDS = 2.0  # a look at the children held elsewhere when no notification came
TICK_SECONDS = 0.25  # how often the loop looks at cancels and overdue children at most

Settle = Callable[[str, Outcome], None]


@dataclass
class Held:
    """A child this body holds, submitted to the executor."""

    task: ChildTask
    future: Any
    started: float | None = None  # when the executor first said it runs


@dataclass
class Came:
    """An attempt that came back: a result to commit, or a failure to record."""

    task: ChildTask
    value: Any = None
    stored: Placed | None = None  # the result, placed (a large one in chunks already)
    verdict: Verdict | None = None
    traceback: str = ""


class Driver:
    """Runs the children one ``wait`` waits for on ``backend``; ``settle(name, outcome)``
    receives each child's outcome (it may raise: fail-fast)."""

    def __init__(self, ex: Execution, backend: Backend, settle: Settle) -> None:
        self.ex = ex
        self.backend = backend
        self.settle = settle
        self.worker = f"executor:{ex.owner}"
        self.lease = ex.store.settings.lease_seconds
        self.waiting: set[str] = set()
        self.held: dict[str, Held] = {}
        self.names: dict[Any, str] = {}  # future -> the child it runs
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.due: dict[str, float] = {}  # children back in the queue -> when to claim them
        self.renew_at = 0.0
        self.looked = 0.0  # the last look at the children held elsewhere
        self.ticked = 0.0

    def drive(self, names: list[str]) -> None:
        self.waiting = set(names)
        notes = listener(self.ex.store)
        run_id = self.ex.run_id
        self.renew_at = time.monotonic() + self.lease / 3
        try:
            token = notes.token(run_id)
            self.claim()
            while self.waiting:
                self.ex.check_live()
                came = self.next_batch(self.wait_seconds())
                if came:
                    self.finish(came)
                now = time.monotonic()
                if now >= self.renew_at:
                    with self.ex.lock:
                        queue_db.renew_leases(self.ex.conn, self.worker, self.lease)
                    self.renew_at = now + self.lease / 3
                noted = notes.token(run_id) != token
                due = any(at <= now for at in self.due.values())
                if self.elsewhere() and (noted or due or now - self.looked >= POLL_SECONDS):
                    token = notes.token(run_id)
                    self.claim()
                if now - self.ticked >= TICK_SECONDS:
                    self.ticked = now
                    if noted:
                        token = notes.token(run_id)
                        self.ex.look_for_cancel()
                    self.expire(now)
        finally:
            self.abandon()

    # -- claiming and submitting ----------------------------------------------------
    def elsewhere(self) -> list[str]:
        """Children waited for that this body does not hold (queued, or another's)."""
        return [name for name in self.waiting if name not in self.held]

    def claim(self) -> None:
        """Take the children of ``elsewhere`` that are ready or lost, submit them, and
        settle those that finished elsewhere meanwhile."""
        names = self.elsewhere()
        self.looked = time.monotonic()
        if not names:
            return
        with self.ex.lock:
            tasks = queue_db.claim_own(self.ex.conn, self.ex.who, worker=self.worker,
                                       names=names, lease=self.lease)
        for task in tasks:
            self.due.pop(task.name, None)
        self.submit(tasks)
        rest = [name for name in names if name not in self.held]
        if rest:
            with self.ex.lock:
                rows = queue_db.outcomes(self.ex.conn, self.ex.run_id, self.ex.generation, rest)
            for row in rows:
                self.due.pop(row.name, None)
                self.waiting.discard(row.name)
                self.settle(row.name, attempts.outcome_of(self.ex, row))

    def submit(self, tasks: list[ChildTask]) -> None:
        calls, kept, refused = [], [], []
        for task in tasks:
            try:  # checked here: the executor's workers hold no secret
                body = bytes(codec.open_envelope(task.task, what=f"child {task.name!r}"))
            except PayloadError as exc:
                refused.append(Came(task, verdict=attempts.framework(task.name, str(exc),
                                                                     "not_loadable")))
                continue
            calls.append((body, StepContext(self.ex.run_id, self.ex.name, task.name,
                                            task.attempts), task.timeout_s))
            kept.append(task)
        try:
            futures = self.backend.submit(remote.run_child, calls)
        except Exception as exc:  # shut down, broken, a client that went away
            with self.ex.lock:
                queue_db.release(self.ex.conn, self.worker, kept)
            raise UsageError(f"run {self.ex.run_id!r}: the executor ({self.backend.label}) "
                             f"refused its children: {one_line(exc)}; they stay queued: wait "
                             "again with a working executor, or executor='off'") from None
        for task, future in zip(kept, futures, strict=True):
            self.held[task.name] = Held(task, future)
            self.names[future] = task.name
            self.backend.when_done(future, self.done.put)
        self.conclude(refused)

    # -- hearing back ---------------------------------------------------------------
    def wait_seconds(self) -> float:
        now = time.monotonic()
        until = [self.renew_at, now + TICK_SECONDS, *self.due.values()]
        if self.elsewhere():
            until.append(self.looked + POLL_SECONDS)
        return max(0.0, min(until) - now)

    def next_batch(self, timeout: float) -> list[Any]:
        """Futures that came back: the first within ``timeout``, then those that follow
        within ``FLUSH_SECONDS`` (committed together)."""
        try:
            batch = [self.done.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + FLUSH_SECONDS
        while len(batch) < MAX_BATCH:
            left = deadline - time.monotonic()
            try:
                batch.append(self.done.get(timeout=left) if left > 0 and len(batch) < len(self.held)
                             else self.done.get_nowait())
            except queue.Empty:
                break
        return batch

    def finish(self, futures: list[Any], *, settle: bool = True) -> None:
        mine = [(self.held.pop(self.names.pop(f)), f) for f in futures if f in self.names]
        if not mine:
            return
        replies = self.backend.outcomes([future for _, future in mine])
        self.conclude([self.judge(held.task, reply)
                       for (held, _), reply in zip(mine, replies, strict=True)], settle=settle)

    def judge(self, task: ChildTask, reply: Any) -> Came:
        name = task.name
        if isinstance(reply, ImportError):  # zart_nb (or what it needs) missing out there
            return Came(task, verdict=attempts.framework(name, (
                f"child {name!r}: the executor's worker cannot load zart-nb's runner: "
                f"{one_line(reply)}; install zart-nb where the executor runs"), "not_loadable"))
        if isinstance(reply, BaseException):  # the executor lost it (its worker died)
            return Came(task, verdict=attempts.after_loss(task, reply))
        if not isinstance(reply, remote.Reply):
            return Came(task, verdict=attempts.framework(
                name, f"child {name!r}: the executor answered {type(reply).__name__}", "failed"))
        if reply.kind == remote.RETURNED and reply.data is not None:
            return self.accept(task, reply.data, reply.pickled_by)
        if reply.kind == remote.RAISED and reply.data is not None:
            try:
                error = pickle.loads(reply.data)
            except Exception as exc:  # a class this process cannot import
                error = ZartError(f"child {name!r} raised an error that cannot be loaded "
                                  f"here: {one_line(exc)}")
            return Came(task, verdict=attempts.after_error(task, error),
                        traceback=reply.traceback)
        if reply.kind == remote.TIMED_OUT:
            return Came(task, verdict=attempts.timed_out(name, task.timeout_s))
        reason = reply.kind if reply.kind in (remote.NOT_LOADABLE, remote.NOT_PICKLABLE) else "failed"
        return Came(task, verdict=attempts.framework(name, reply.message or reply.kind, reason))

    def accept(self, task: ChildTask, data: bytes, pickled_by: tuple[int, int, str]) -> Came:
        """A result: its pickle sealed as it is when this Python could have written it,
        else loaded and pickled again; and its value for ``wait``."""
        owner = f"child {task.name!r}"
        try:
            value = pickle.loads(data)
        except Exception as exc:  # a class this process cannot import
            return Came(task, verdict=attempts.framework(task.name, (
                f"{owner}: its result cannot be loaded here: {one_line(exc)}"), "not_loadable"))
        store = self.ex.store
        try:
            stored = (payloads.encode_pickle(store, data, what="result", owner=owner)
                      if tuple(pickled_by) == codec.PICKLED_BY
                      else payloads.encode(store, value, what="result", owner=owner))
        except PayloadError as exc:
            return Came(task, verdict=attempts.framework(task.name, str(exc), "not_picklable"))
        except StoreError as exc:  # the database did not take it (a full disk)
            return Came(task, verdict=attempts.framework(task.name, str(exc), "not_stored"))
        return Came(task, value=value, stored=stored)

    def conclude(self, came: list[Came], *, settle: bool = True) -> None:
        """Commit what came back, then settle it: results in one statement, failures
        recorded (back in the queue when they will be tried again)."""
        if not came:
            return
        results = [c for c in came if c.verdict is None and c.stored is not None]
        failures = [c for c in came if c.verdict is not None]
        with self.ex.lock:
            if results:
                written = set(queue_db.complete(self.ex.conn, self.worker, [
                    ChildResult(c.task, c.stored) for c in results if c.stored is not None]))
                if len(written) < len(results):
                    raise Suspend(f"run {self.ex.run_id!r}: another process took over its "
                                  "children (this one lost the run)")
            for c in failures:
                assert c.verdict is not None
                queue_db.fail(self.ex.conn, self.worker,
                              attempts.record(c.task, c.verdict, c.traceback))
        if not settle:
            return
        for c in results:
            self.waiting.discard(c.task.name)
            self.settle(c.task.name, Ok(c.value))
        for c in failures:
            assert c.verdict is not None
            if c.verdict.retry_at is not None:  # back in the queue: claimed again when due
                wait = max(0.0, (c.verdict.retry_at - utcnow()).total_seconds())
                self.due[c.task.name] = time.monotonic() + wait
                continue
            self.waiting.discard(c.task.name)
            self.settle(c.task.name, Err(c.verdict.error))

    def expire(self, now: float) -> None:
        """Children that run past their timeout plus the lease without an answer (their
        worker does not come back to us): cancelled and failed as timed out."""
        overdue = []
        for held in self.held.values():
            timeout = held.task.timeout_s
            if not timeout:
                continue
            if held.started is None:
                if self.backend.started(held.future):
                    held.started = now
            elif now - held.started > timeout + self.lease:
                overdue.append(held)
        for held in overdue:
            self.backend.cancel(held.future)
            self.held.pop(held.task.name)
            self.names.pop(held.future)
        self.conclude([Came(h.task, verdict=attempts.timed_out(h.task.name, h.task.timeout_s))
                       for h in overdue])

    # -- leaving ----------------------------------------------------------------------
    def abandon(self) -> None:
        """The wait ends (all settled, or an error, an interrupt, a cancel): results that
        came back are committed, so that the next execution loads them; tasks that never
        started go back to the queue; those that started keep their rows until their
        lease expires or the next body of the run takes them over."""
        if not self.held:
            return
        came = []
        while True:
            try:
                came.append(self.done.get_nowait())
            except queue.Empty:
                break
        try:
            self.finish(came, settle=False)
            unstarted = [h.task for h in self.held.values() if self.backend.cancel(h.future)]
            if unstarted:
                with self.ex.lock:
                    queue_db.release(self.ex.conn, self.worker, unstarted)
        except (ZartError, Suspend):
            pass  # the database went away, or the run did: the error being raised says so
        finally:
            self.held.clear()
            self.names.clear()
