"""Parallel steps: ``schedule`` queues a child as a row in PostgreSQL, ``wait`` collects them.

Children are buffered and inserted in one statement per batch (at ``wait``, when the
buffer is full, or when the body ends). A child's default name is its step name plus
its call order (``check_service-0``, ``-1``, …), so that an execution of the body again
finds the same rows: finished children come back from the journal, running ones are
not started twice, failed or changed ones are queued again.

Waiting wakes on LISTEN/NOTIFY, with a slow poll as the fallback; the body's process
starts a local worker pool (``ZART_WORKERS``, default 2; 0 relies on external workers).
In an async body, on its event loop, ``wait`` returns an awaitable (``await
wait(handles)``); ``schedule`` is a plain call there too (it only buffers, until the
buffer is full). A child may be a coroutine function: workers run it on an event loop.
With an executor (``wait(handles, executor=...)``, see ``backends``), the waiting body
runs the children on it instead (``executors``); their rows stay the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from .. import codec
from ..errors import PayloadError, UsageError
from ..sources import with_sources
from ..store import queue as queue_db
from ..store.notify import listener
from ..store.records import ChildOutcome, JournalEntry, NewChild
from . import backends, hooks
from .attempts import outcome_of
from .effects import Io, Notified, Pause, Steps, perform, waiting
from .execution import Execution, body_execution
from .executors import Driver
from .fingerprint import arguments_fingerprint, code_fingerprint
from .model import Err, Ok, Outcome
from .steps import NamedCall, StepFunction
from .worker import local_pool

FLUSH_AT = 1000  # children buffered before an insert
POLL_SECONDS = 2.0  # fallback when a notification is lost
COALESCE_PER_CHILD = 1e-5  # a waiting body's pause between looks, per child still waiting
MAX_COALESCE_SECONDS = 0.05


@dataclass
class StepHandle:
    """A scheduled child: ``wait`` turns it into its result."""

    name: str
    run_id: str | None = None
    entry: JournalEntry | None = field(default=None, repr=False)  # finished in an earlier execution
    outcome: Outcome | None = field(default=None, repr=False)


class Children:
    """The children an execution scheduled and has not inserted yet."""

    def __init__(self) -> None:
        self.pending: list[NewChild] = []
        self.counters: dict[str, int] = {}
        self._functions: dict[int, tuple[Callable[..., Any], bytes]] = {}
        self._steps: dict[int, tuple[Callable[..., Any], StepFunction]] = {}

    def step_of(self, fn: Callable[..., Any]) -> StepFunction:
        """A plain function scheduled as a step: wrapped once per execution (thousands
        of children of one function share it)."""
        found = self._steps.get(id(fn))
        if found is None or found[0] is not fn:
            found = self._steps[id(fn)] = (fn, StepFunction(fn))
        return found[1]

    def pickled(self, fn: Callable[..., Any], child: str) -> bytes:
        """``fn`` pickled once per execution (a notebook function travels by value, which
        costs more than its arguments), with its file names and the source lines of a
        notebook's cells, for its tracebacks on the worker; the task's envelope signs
        these bytes too."""
        found = self._functions.get(id(fn))
        if found is None or found[0] is not fn:
            try:
                found = self._functions[id(fn)] = (
                    fn, cloudpickle.dumps(with_sources(fn), protocol=5))
            except Exception as exc:  # pickling raises many kinds of errors
                raise PayloadError(f"child {child!r}: "
                                   f"{codec.unpicklable_reason(fn, 'function', exc)}") from None
        return found[1]

    def flush(self, ex: Execution) -> None:
        self.insert(ex, self.take())

    def take(self) -> list[NewChild]:
        """The buffered children, the buffer emptied (on the body's thread: an async body
        may schedule more while these are inserted on its I/O thread)."""
        batch, self.pending = self.pending, []
        return batch

    def insert(self, ex: Execution, batch: list[NewChild]) -> None:
        if batch:
            ex.read(queue_db.insert, ex.who, ex.namespace, batch)
            if not backends.configured(ex.executor):  # else the waiting body runs them
                ensure_local_workers(ex)


def children_of(ex: Execution) -> Children:
    if ex.children is None:
        ex.children = Children()
    kids: Children = ex.children
    return kids


def schedule(fn: Callable[..., Any] | StepFunction | NamedCall, *args: Any,
             **kwargs: Any) -> StepHandle:
    """Queue ``fn(*args, **kwargs)`` as a child that any worker may run; see ``wait``."""
    named: str | None = None
    if isinstance(fn, NamedCall):
        named = fn.name
        fn = fn.step
    ex = body_execution()
    if not isinstance(fn, StepFunction):
        if not callable(fn):
            raise UsageError(f"schedule() needs a function or a step, not {type(fn).__name__}")
        fn = children_of(ex).step_of(fn) if ex is not None else StepFunction(fn)
    if ex is None:  # outside a body (or inside a step): the function runs now
        handle = StepHandle(named or fn.template)
        try:
            handle.outcome = Ok(fn.fn(*args, **kwargs))
        except Exception as exc:
            handle.outcome = Err(exc)
        return handle
    kids = children_of(ex)
    if named is None:
        named = fn.resolve_name(fn.template, args, kwargs)
        if named == fn.template:  # a fixed name: number the calls
            number = kids.counters.get(named, 0)
            kids.counters[named] = number + 1
            named = f"{named}-{number}"
    code_fp = code_fingerprint(fn.fn)
    args_fp = arguments_fingerprint(args, kwargs, kind="child", name=named)
    decision = ex.lookup(named, code_fp, args_fp, what="child")
    handle = StepHandle(named, ex.run_id)
    if decision.action == "pending":
        return handle  # queued or running already: not started twice
    if decision.action == "replay":
        handle.entry = decision.entry
        return handle
    task = codec.encode((kids.pickled(fn.fn, named), args, kwargs), what="child",
                        owner=f"child {named!r}")
    kids.pending.append(NewChild(named, decision.seq, code_fp, args_fp, task,
                                 fn.retry.max_attempts, fn.retry_json, fn.timeout))
    if len(kids.pending) >= FLUSH_AT:
        kids.flush(ex)
    return handle


def wait(handles: StepHandle | list[StepHandle], return_exceptions: bool = False, *,
         executor: Any = None) -> Any:
    """The results of ``handles`` in order, once every child finished (awaited in an
    async body).

    Fail-fast by default: the first failed child's error is raised (a note names the
    child). With ``return_exceptions=True`` errors are returned in place of results.
    ``executor``: run the children on it (a ``concurrent.futures.Executor``, a Dask
    client, a name such as ``"dask://host:8786"``; ``"off"``: zart-nb's workers) while
    their rows, leases and results stay in PostgreSQL; by default the body's, then the
    kernel's (``%zart_executor``), then ``ZART_EXECUTOR``'s, else zart-nb's workers.
    """
    single = isinstance(handles, StepHandle)
    items = [handles] if isinstance(handles, StepHandle) else list(handles)
    for h in items:
        if not isinstance(h, StepHandle):
            raise UsageError(f"wait() takes handles returned by schedule(), not {type(h).__name__}")
    ex = body_execution()
    if ex is None:
        results = [_result_of(None, h, return_exceptions) for h in items]
        return results[0] if single else results
    names = ", ".join(h.name for h in items[:3]) + (", …" if len(items) > 3 else "")
    return perform(ex, _collect(ex, items, single, return_exceptions, executor),
                   f"wait([{names}])")


def _collect(ex: Execution, items: list[StepHandle], single: bool, return_exceptions: bool,
             executor: Any) -> Steps[Any]:
    kids = children_of(ex)
    if kids.pending:
        yield Io(kids.insert, ex, kids.take())
    if not ex.progress_shown:  # a fully replayed fan-out shows its progress too
        ex.progress_shown = True
        hooks.progress(ex.run_id)
    waiting_for = {h.name: h for h in items if h.outcome is None and h.entry is None}
    if waiting_for:
        backend = backends.choose(executor, ex.executor)
        if backend is None:
            yield from _until_finished(ex, waiting_for, return_exceptions)
        else:
            yield from _on_executor(ex, backend, waiting_for, return_exceptions)
    results = []
    for h in items:
        if h.outcome is None and h.entry is not None and h.entry.result_hash is not None:
            h.outcome = Ok((yield Io(ex.value, h.entry)))  # a large result: from the store
        results.append(_result_of(ex, h, return_exceptions))
    return results[0] if single else results


def _settled(ex: Execution, handle: StepHandle, outcome: Outcome, return_exceptions: bool) -> None:
    handle.outcome = outcome
    if isinstance(outcome, Err) and not return_exceptions:
        raise _with_note(outcome.error, handle.name, ex.run_id)


def _on_executor(ex: Execution, backend: Any, waiting_for: dict[str, StepHandle],
                 return_exceptions: bool) -> Steps[None]:
    """The waiting body runs the children on ``backend`` (``executors.Driver``): a blocking
    driver, on the body's I/O thread in an async body."""
    def settle(name: str, outcome: Outcome) -> None:
        _settled(ex, waiting_for.pop(name), outcome, return_exceptions)

    yield from waiting(ex, True)
    try:
        yield Io(Driver(ex, backend, settle).drive, list(waiting_for))
    finally:
        yield from waiting(ex, False)


def _until_finished(ex: Execution, waiting_for: dict[str, StepHandle],
                    return_exceptions: bool) -> Steps[None]:
    # children queued by an earlier execution (that died) were not flushed now: the
    # workers that will run them must be started all the same
    yield Io(ensure_local_workers, ex)
    notes = yield Io(listener, ex.store)
    yield from waiting(ex, True)
    try:
        while waiting_for:
            ex.check_live()
            token = notes.token(ex.run_id)
            rows = yield Io(ex.read, queue_db.outcomes, ex.run_id, ex.generation,
                            list(waiting_for))
            for row in rows:
                _settled(ex, waiting_for.pop(row.name), (yield from _outcome_of(ex, row)),
                         return_exceptions)
            if waiting_for and (yield Notified(notes, ex.run_id, token, POLL_SECONDS)):
                yield Io(ex.look_for_cancel)
                # Each look costs about a microsecond per waiting name, and every batch a
                # worker commits notifies: while many wait, let several batches land
                # before looking again (the last children are seen at once).
                yield Pause(min(MAX_COALESCE_SECONDS, len(waiting_for) * COALESCE_PER_CHILD))
    finally:
        yield from waiting(ex, False)


def _outcome_of(ex: Execution, row: ChildOutcome) -> Steps[Outcome]:
    if row.status == "completed" and row.result_hash is not None:
        outcome: Outcome = yield Io(outcome_of, ex, row)  # a large result: from the store
        return outcome
    return outcome_of(ex, row)


def _with_note(error: BaseException, name: str, run_id: str) -> BaseException:
    """The child's error (a copy loaded from the journal) with a note naming the child."""
    if hasattr(error, "add_note"):
        error.add_note(f"(raised by child step {name!r} of run {run_id!r})")
    return error


def _result_of(ex: Execution | None, h: StepHandle, return_exceptions: bool) -> Any:
    if h.outcome is None and h.entry is not None and ex is not None:
        h.outcome = Ok(ex.value(h.entry))
    if h.outcome is None:
        raise UsageError(f"child {h.name!r} has not finished: wait() for it inside its run")
    if isinstance(h.outcome, Ok):
        return h.outcome.value
    if not return_exceptions:
        raise h.outcome.error
    return h.outcome.error


_pool_lock = threading.Lock()


def ensure_local_workers(ex: Execution) -> None:
    """Start this process's local worker pool (``ZART_WORKERS`` processes) once."""
    size = ex.store.settings.workers
    if size <= 0:
        return
    with _pool_lock:
        local_pool(ex.store, size, ex.namespace)

