"""Parallel steps: ``schedule`` queues a child as a row in PostgreSQL, ``wait`` collects them.

Children are buffered and inserted in one statement per batch (at ``wait``, when the
buffer is full, or when the body ends). A child's default name is its step name plus
its call order (``check_service-0``, ``-1``, …), so that an execution of the body again
finds the same rows: finished children come back from the journal, running ones are
not started twice, failed or changed ones are queued again.

Waiting wakes on LISTEN/NOTIFY, with a slow poll as the fallback; the body's process
starts a local worker pool (``ZART_WORKERS``, default 2; 0 relies on external workers).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle

from .. import codec
from ..errors import CodeChanged, PayloadError, StepFailed, UsageError
from ..store import queries
from ..store.notify import listener
from . import hooks
from .fingerprint import code_fingerprint
from .journal import Execution, current, in_step
from .model import Entry, RetryPolicy
from .steps import NamedCall, StepFunction

FLUSH_AT = 1000  # children buffered before an insert
POLL_SECONDS = 2.0  # fallback when a notification is lost
COALESCE_PER_CHILD = 1e-5  # a waiting body's pause between looks, per child still waiting
MAX_COALESCE_SECONDS = 0.05


@dataclass
class StepHandle:
    """A scheduled child: ``wait`` turns it into its result."""

    name: str
    run_id: str | None = None
    entry: Entry | None = field(default=None, repr=False)  # finished in an earlier execution
    outcome: tuple[str, Any] | None = field(default=None, repr=False)  # ("ok"|"error", value)


@dataclass
class _Pending:
    name: str
    seq: int
    code_fp: bytes
    args_fp: bytes
    task: bytes
    policy: RetryPolicy
    timeout: float | None


class Children:
    """The children an execution scheduled and has not inserted yet."""

    def __init__(self) -> None:
        self.pending: list[_Pending] = []
        self.counters: dict[str, int] = {}
        self._functions: dict[int, tuple[Callable, bytes]] = {}

    def pickled(self, fn: Callable, child: str) -> bytes:
        """``fn`` pickled once per execution (a notebook function travels by value, which
        costs more than its arguments); the task's envelope signs these bytes too."""
        found = self._functions.get(id(fn))
        if found is None or found[0] is not fn:
            try:
                found = self._functions[id(fn)] = (fn, cloudpickle.dumps(fn, protocol=5))
            except Exception as exc:  # pickling raises many kinds of errors
                raise PayloadError(f"child {child!r}: "
                                   f"{codec.unpicklable_reason(fn, 'function', exc)}") from None
        return found[1]

    def flush(self, ex: Execution) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        with ex.lock:
            queries.execute(ex.conn, "insert_children", **{
                "run_id": ex.run_id, "generation": ex.generation, "namespace": ex.namespace,
                "owner": ex.owner,
                "names": [c.name for c in batch], "seqs": [c.seq for c in batch],
                "code_fps": [c.code_fp for c in batch], "args_fps": [c.args_fp for c in batch],
                "tasks": [c.task for c in batch],
                "max_attempts": [c.policy.max_attempts for c in batch],
                "retries": [json.dumps(c.policy.to_json()) for c in batch],
                "timeouts": [c.timeout for c in batch],
            })
        ensure_local_workers(ex)


def children_of(ex: Execution) -> Children:
    if ex.children is None:
        ex.children = Children()
    return ex.children


def schedule(fn: Callable | StepFunction | NamedCall, *args: Any, **kwargs: Any) -> StepHandle:
    """Queue ``fn(*args, **kwargs)`` as a child that any worker may run; see ``wait``."""
    named: str | None = None
    if isinstance(fn, NamedCall):
        fn, named = fn.step, fn.name
    if not isinstance(fn, StepFunction):
        if not callable(fn):
            raise UsageError(f"schedule() needs a function or a step, not {type(fn).__name__}")
        fn = StepFunction(fn)
    ex = current()
    if ex is None or in_step() is not None:
        handle = StepHandle(named or fn.template)
        try:
            handle.outcome = ("ok", fn.fn(*args, **kwargs))
        except Exception as exc:
            handle.outcome = ("error", exc)
        return handle
    kids = children_of(ex)
    if named is None:
        named = fn.resolve_name(fn.template, args, kwargs)
        if named == fn.template:  # a fixed name: number the calls
            number = kids.counters.get(named, 0)
            kids.counters[named] = number + 1
            named = f"{named}-{number}"
    seq = ex.claim_name(named)
    code_fp = code_fingerprint(fn.fn)
    args_fp = codec.fingerprint((args, kwargs), owner=f"child {named!r}")
    handle = StepHandle(named, ex.run_id)
    entry = ex.journal.get(named)
    if entry is not None and entry.status in ("scheduled", "running"):
        return handle  # queued or running already: not started twice
    if entry is not None and entry.status == "completed":
        changed = entry.change(code_fp, args_fp)
        if changed is None or ex.on_change == "ignore":
            ex.report.replayed.append(named)
            handle.entry = entry
            return handle
        if ex.on_change == "error":
            raise CodeChanged(f"child {named!r} of run {ex.run_id!r}: its {changed} changed "
                              "since it completed (on_change='error')")
        ex.report.changed.append(named)
    else:
        (ex.report.retried if entry is not None else ex.report.executed).append(named)
    task = codec.encode((kids.pickled(fn.fn, named), args, kwargs), what="child",
                        owner=f"child {named!r}")
    kids.pending.append(_Pending(named, seq, code_fp, args_fp, task, fn.retry, fn.timeout))
    if len(kids.pending) >= FLUSH_AT:
        kids.flush(ex)
    return handle


def wait(handles: StepHandle | list[StepHandle], return_exceptions: bool = False) -> Any:
    """The results of ``handles`` in order, once every child finished.

    Fail-fast by default: the first failed child's error is raised (a note names the
    child). With ``return_exceptions=True`` errors are returned in place of results.
    """
    single = isinstance(handles, StepHandle)
    items = [handles] if single else list(handles)
    for h in items:
        if not isinstance(h, StepHandle):
            raise UsageError(f"wait() takes handles returned by schedule(), not {type(h).__name__}")
    ex = current()
    if ex is not None and in_step() is None:
        _collect(ex, items, return_exceptions)
    results = [_result_of(ex, h, return_exceptions) for h in items]
    return results[0] if single else results


def _collect(ex: Execution, items: list[StepHandle], return_exceptions: bool) -> None:
    children_of(ex).flush(ex)
    if not ex.progress_shown:  # a fully replayed fan-out shows its progress too
        ex.progress_shown = True
        hooks.progress(ex.run_id)
    waiting = {h.name: h for h in items if h.outcome is None and h.entry is None}
    if not waiting:
        return
    # children queued by an earlier execution (that died) were not flushed now: the
    # workers that will run them must be started all the same
    ensure_local_workers(ex)
    ex.set_status("waiting")
    notes = listener(ex.store)
    try:
        while waiting:
            ex.check_live()
            token = notes.token(ex.run_id)
            with ex.lock:
                rows = queries.all_rows(ex.conn, "children_outcomes", run_id=ex.run_id,
                                        generation=ex.generation, names=list(waiting))
            for row in rows:
                handle = waiting.pop(row["name"])
                handle.outcome = _outcome_of(ex, row)
                if handle.outcome[0] == "error" and not return_exceptions:
                    raise _with_note(handle.outcome[1], handle.name, ex.run_id)
            if waiting and notes.wait(ex.run_id, token, POLL_SECONDS):
                ex.look_for_cancel()
                # Each look costs about a microsecond per waiting name, and every batch a
                # worker commits notifies: while many wait, let several batches land
                # before looking again (the last children are seen at once).
                time.sleep(min(MAX_COALESCE_SECONDS, len(waiting) * COALESCE_PER_CHILD))
    finally:
        ex.set_status("running")


def _outcome_of(ex: Execution, row: dict) -> tuple[str, Any]:
    name = row["name"]
    if row["status"] == "completed":
        return ("ok", ex.stored_value(row["result"], row["result_hash"],
                                      what=f"result of child {name!r}"))
    if row["error_payload"] is not None:
        try:
            return ("error", codec.decode(row["error_payload"], what=f"error of child {name!r}"))
        except PayloadError as exc:
            return ("error", exc)
    return ("error", StepFailed(f"child {name!r}: {row['error'] or 'failed'}", step=name,
                                reason="worker_lost"))


def _with_note(error: BaseException, name: str, run_id: str) -> BaseException:
    if hasattr(error, "add_note"):
        error.add_note(f"(raised by child step {name!r} of run {run_id!r})")
    return error


def _result_of(ex: Execution | None, h: StepHandle, return_exceptions: bool) -> Any:
    if h.outcome is None and h.entry is not None and ex is not None:
        h.outcome = ("ok", ex.value(h.entry))
    if h.outcome is None:
        raise UsageError(f"child {h.name!r} has not finished: wait() for it inside its run")
    kind, value = h.outcome
    if kind == "error" and not return_exceptions:
        raise value
    return value


_pool_lock = threading.Lock()


def ensure_local_workers(ex: Execution) -> None:
    """Start this process's local worker pool (``ZART_WORKERS`` processes) once."""
    size = ex.store.settings.workers
    if size <= 0:
        return
    from .worker import local_pool

    with _pool_lock:
        local_pool(ex.store, size, ex.namespace)

