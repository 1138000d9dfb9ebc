"""Executing a durable body: the run it executes, its ownership, the heartbeat, the outcome.

A ``RunRequest`` says what to execute: a body, its arguments, the run. The operations
on it are ``execute`` (here, as the run's owner; a run that completed before returns
its stored result), ``replay`` (the same, but a completed run is executed again with
every step replayed, so that the body's own effects come back: the notebook front),
and ``detach`` (handed to the workers, which execute the stored body).

One body executes a run at a time. The executing process owns the run through a lease
in PostgreSQL that a heartbeat renews. Another process that executes the same run
while the lease is live attaches: it waits for the owner's outcome (or gets RunBusy
when it asked not to wait). A dead owner is replaced at once when it ran on this host
and its pid is gone, otherwise when its lease expires.

Claiming a run is one statement (it creates the run, or takes it over); the body's
source and pickle are kept once, when the claim created the run. One pool connection
serves from the claim to the end of the body.

An async body is awaited: ``execute_async`` / ``replay_async`` run it on the running
event loop, and the execution's store calls on a thread of its own, so that the loop
never waits for the database. The logic is one generator of effects (``_executing``,
see effects.py) for both; ``execute`` of an async body from sync code runs it to its
end on an event loop of its own (loops.py).
"""

from __future__ import annotations

import os
import socket
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from .. import codec
from ..errors import PayloadError, RunBusy, RunFailed, RunNotFound, StoreError, Suspend, UsageError
from ..frames import user_stacklevel
from ..names import check_name
from ..store import journal as journal_db
from ..store import payloads
from ..store import runs as runs_db
from ..store.connection import Store, get_store
from ..store.notify import listener
from ..store.records import Claim, Owner, Placed, RunRow, StoredBody
from ..store.sql import Connection
from .effects import Call, Io, Notified, Settle, Steps, adrive, drive
from .execution import Execution, encode_error, executing, one_line
from .lane import AsyncLane, is_async_callable
from .leases import Heartbeat
from .loops import run_to_completion
from .model import Options, Report

HOST = socket.gethostname()


@dataclass(frozen=True)
class BodyResult:
    run_id: str
    value: Any
    report: Report
    attached: bool = False  # the outcome of another process's execution
    unstored: str | None = None  # why ``value`` could not be stored (result_optional)


@dataclass(frozen=True)
class RunRequest:
    """A body to execute as run ``run_id``: what ``@durable`` and the cells hand the engine.

    ``source`` gives the body's source text, read only when the run is created (resume
    shows it, and a notebook cell is resumed from it). ``resumable`` keeps the pickled
    body too, when the run is created (``%zart_resume`` from another kernel); a body
    that does not pickle is then resumed from its source. ``result_optional``: a result
    that does not pickle is not an error; the run's stored result is None, and the
    execution's ``BodyResult`` says why (a notebook cell still shows its value).
    ``executor``: where the body's waits run its children (``wait(executor=...)``);
    it belongs to this process, so a detached run cannot take one.
    """

    body: Callable[..., Any]
    name: str
    run_id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    on_failure: Callable[[Any, BaseException], Any] | None = None
    source: Callable[[], str | None] | None = None
    resumable: bool = False
    result_optional: bool = False
    executor: Any = None

    def __post_init__(self) -> None:
        check_name("run id", self.run_id)
        check_name("durable name", self.name)
        if not callable(self.body):
            raise UsageError(f"a durable body must be callable, not {type(self.body).__name__}")
        if self.on_failure is not None and not callable(self.on_failure):
            raise UsageError(f"on_failure must be a function, not {type(self.on_failure).__name__}")

    def encoded_input(self) -> bytes:
        return codec.encode((self.args, self.kwargs), what="input", owner=f"run {self.run_id!r}")

    def encoded_body(self) -> bytes:
        """The body and its on_failure handler as workers (detach, resume) load them."""
        return codec.encode((self.body, self.on_failure), what="body",
                            owner=f"run {self.run_id!r}")

    def source_text(self) -> str | None:
        return self.source() if self.source is not None else None


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute(request: RunRequest, *, restart: bool = False, wait: bool = True,
            on_attach: Callable[[RunRow], None] | None = None,
            store: Store | None = None) -> BodyResult:
    """Execute the body as its run; a run that ended before returns its stored outcome
    (its result, or its failure raised) without running the body.

    ``restart``: start the run afresh (a new generation) first. ``wait=False``: raise
    RunBusy instead of attaching to a run another process executes. ``on_attach`` is
    called once with the run's row when this call attaches. An async body runs to its
    end on an event loop of its own (``execute_async`` awaits it on the caller's).
    """
    return _run(request, lambda lane: _executing(
        request, restart=restart, wait=wait, reopen=False, on_attach=on_attach, store=store,
        lane=lane))


async def execute_async(request: RunRequest, *, restart: bool = False, wait: bool = True,
                        on_attach: Callable[[RunRow], None] | None = None,
                        store: Store | None = None) -> BodyResult:
    """``execute``, awaited on the running event loop (an async body's natural way)."""
    return await _on_loop(lambda lane: _executing(
        request, restart=restart, wait=wait, reopen=False, on_attach=on_attach, store=store,
        lane=lane))


def replay(request: RunRequest, *, restart: bool = False,
           on_attach: Callable[[RunRow], None] | None = None,
           store: Store | None = None) -> BodyResult:
    """Execute the body as its run, a completed run too: its completed steps replay, so that
    the body's own effects (a notebook's variables) come back in this process. A run
    another process executes is attached to; the caller executes it again once it ended."""
    return _run(request, lambda lane: _executing(
        request, restart=restart, wait=True, reopen=True, on_attach=on_attach, store=store,
        lane=lane))


async def replay_async(request: RunRequest, *, restart: bool = False,
                       on_attach: Callable[[RunRow], None] | None = None,
                       store: Store | None = None) -> BodyResult:
    """``replay``, awaited on the running event loop (a notebook cell that awaits)."""
    return await _on_loop(lambda lane: _executing(
        request, restart=restart, wait=True, reopen=True, on_attach=on_attach, store=store,
        lane=lane))


def _run(request: RunRequest, steps: Callable[[AsyncLane | None], Steps[BodyResult]]) -> BodyResult:
    """From sync code: a sync body here, an async one on an event loop of its own."""
    if is_async_callable(request.body):
        return run_to_completion(_on_loop(steps))
    return drive(steps(None))


async def _on_loop(steps: Callable[[AsyncLane | None], Steps[BodyResult]]) -> BodyResult:
    lane = AsyncLane()
    try:
        return await adrive(steps(lane), lane)
    finally:
        lane.close()


def detach(request: RunRequest, *, restart: bool = False, store: Store | None = None) -> None:
    """Hand the run to the workers, which execute its stored body (it must pickle)."""
    if request.executor is not None:
        raise UsageError(f"run {request.run_id!r}: a detached run is executed by a zart-nb "
                         "worker, which cannot use this process's executor")
    store = store or get_store()
    try:
        body = request.encoded_body()
    except PayloadError as exc:
        raise PayloadError(f"a detached body must pickle: {exc}") from None
    run_input = request.encoded_input()
    with store.connection() as conn:
        if restart:
            runs_db.restart(conn, request.run_id)
        handed = runs_db.detach(conn, run_id=request.run_id, name=request.name,
                                namespace=_namespace(request, store), input=run_input,
                                body=body, source=request.source_text(),
                                options=request.options.stored())
    if not handed:
        raise RunBusy(f"run {request.run_id!r} is completed or being executed; it was not "
                      "handed to the workers")


def execute_claimed(store: Store, stored: StoredBody, owner: str) -> BodyResult:
    """Execute a detached run that a worker claimed (``stored`` from claim_detached)."""
    what = f"run {stored.run_id!r}"
    body, on_failure = codec.decode(stored.body or b"", what=f"body of {what}")
    args, kwargs = codec.decode(stored.input or b"", what=f"input of {what}")
    request = RunRequest(body, stored.name, stored.run_id, args, kwargs,
                         Options.from_stored(stored.options, stored.namespace), on_failure)
    who = Owner(stored.run_id, stored.generation, owner)
    return _run(request, lambda lane: _with_connection(
        store, lambda conn: _run_body(store, conn, request, who, lane=lane)))


def _namespace(request: RunRequest, store: Store) -> str:
    return request.options.namespace or store.settings.namespace


def _executing(request: RunRequest, *, restart: bool, wait: bool, reopen: bool,
               on_attach: Callable[[RunRow], None] | None, store: Store | None,
               lane: AsyncLane | None) -> Steps[BodyResult]:
    if store is None:
        store = yield Io(get_store)
    owned_by = new_owner()
    run_input = request.encoded_input()

    def claimed(conn: Connection) -> Steps[BodyResult]:
        if restart:
            yield Io(runs_db.restart, conn, request.run_id)
        claim, ended = yield from _acquire(store, conn, request, run_input, owned_by,
                                           wait=wait, reopen=reopen, on_attach=on_attach)
        if claim is None:  # ended elsewhere, or completed before
            assert ended is not None
            if ended.input is not None and bytes(ended.input) != run_input:
                warnings.warn(f"run {request.run_id!r} was executed with other arguments; this "
                              "returns its stored outcome (restart=True, or another run_id, "
                              "runs it anew)", stacklevel=user_stacklevel())
            value = yield Io(stored_outcome, conn, ended)
            return BodyResult(request.run_id, value, Report(), attached=True)
        if claim.created and (request.source is not None or request.resumable):
            yield Io(runs_db.keep_body, conn, request.run_id, _resumable_body(request),
                     request.source_text())
        return (yield from _run_body(store, conn, request,
                                     Owner(request.run_id, claim.generation, owned_by),
                                     fresh=claim.created, lane=lane))

    return (yield from _with_connection(store, claimed))


def _with_connection(store: Store, work: Callable[[Connection], Steps[BodyResult]],
                     ) -> Steps[BodyResult]:
    """``work`` with one pool connection, taken and given back as store calls."""
    holder = store.connection()
    conn = yield Io(holder.__enter__)
    try:
        result = yield from work(conn)
    except BaseException as exc:
        yield Io(holder.__exit__, type(exc), exc, exc.__traceback__)  # raises, or returns False
        raise
    yield Io(holder.__exit__, None, None, None)
    return result


def _resumable_body(request: RunRequest) -> bytes | None:
    if not request.resumable:
        return None
    try:
        return request.encoded_body()
    except PayloadError:
        return None  # resumed from its source instead


def _acquire(store: Store, conn: Connection, request: RunRequest, run_input: bytes, owner: str,
             *, wait: bool, reopen: bool, on_attach: Callable[[RunRow], None] | None,
             ) -> Steps[tuple[Claim | None, RunRow | None]]:
    """(the claim of the run, None), or (None, the final row of a run that ended)."""
    def claim(dead_owner: str | None = None, *, reopen_now: bool = reopen) -> Io:
        return Io(runs_db.claim, conn, run_id=request.run_id, name=request.name,
                  namespace=_namespace(request, store), input=run_input,
                  options=request.options.stored(), owner=owner, host=HOST,
                  pid=os.getpid(), lease=store.settings.lease_seconds, reopen=reopen_now,
                  dead_owner=dead_owner)

    first = yield claim()
    if first is not None:
        return first, None
    notes = None
    attached = False
    while True:
        token = notes.token(request.run_id) if notes is not None else 0
        row = yield Io(runs_db.get, conn, request.run_id)
        if row is None:
            raise RunNotFound(f"run {request.run_id!r} does not exist")
        if row.status == "cancelled":
            raise RunFailed(f"run {request.run_id!r} was cancelled; restart it to execute it again")
        if row.status == "completed" and not (reopen and not attached):
            return None, row
        if attached and row.status == "failed" and row.owner is None:
            return None, row
        taken = yield claim(_dead_owner(row), reopen_now=reopen and not attached)
        if taken is not None:
            return taken, None
        if not wait:
            raise RunBusy(f"run {request.run_id!r} is being executed by {row.owner}; "
                          "attach to it to follow it")
        if notes is None:  # the first wait: listen from now on, then look again
            notes = yield Io(listener, store)
            continue
        if not attached and on_attach is not None:
            on_attach(row)
        attached = True
        yield Notified(notes, request.run_id, token, min(5.0, store.settings.lease_seconds / 3))


def _dead_owner(row: RunRow) -> str | None:
    """The owner of ``row`` when it ran on this host and its process is gone."""
    if row.owner and row.owner_pid and row.owner_host == HOST and not psutil.pid_exists(row.owner_pid):
        return row.owner
    return None


def _run_body(store: Store, conn: Connection, request: RunRequest, who: Owner, *,
              fresh: bool = False, lane: AsyncLane | None = None) -> Steps[BodyResult]:
    """Execute the claimed run's body; ``fresh``: the claim created the run, whose journal
    is empty (not read). ``lane``: the body is async, awaited on that lane's loop."""
    ex = Execution(store, conn, who, name=request.name, on_change=request.options.on_change,
                   namespace=_namespace(request, store))
    ex.lane = lane
    ex.executor = request.executor
    if not fresh:
        yield Io(ex.load)
    synchronous = request.options.durability == "sync"
    if not synchronous:
        yield Io(journal_db.set_durability, conn, synchronous=False)
    heartbeat = Heartbeat(store, ex).start()
    try:
        with executing(ex):
            try:
                value = yield from _body_value(request)
                if ex.children is not None and ex.children.pending:  # scheduled, never waited for
                    yield Io(ex.children.insert, ex, ex.children.take())
            except StoreError:
                raise  # the database failed: nothing more can be stored (released below)
            except Exception as exc:
                if request.on_failure is None:
                    # the user's error is what they see, even when the database cannot
                    # record it (the run is then released as failed, below)
                    yield Io(_quietly, _finish, ex, "failed", None, exc)
                    raise
                value = yield Call(request.on_failure, (_input_of(request.args, request.kwargs),
                                                        exc))
            # off the event loop: a large result is written in chunks now
            placed, unstored = yield Io(_placed_result, store, request, value)
            yield Io(_finish, ex, "completed", placed)
        return BodyResult(request.run_id, value, ex.report, unstored=unstored)
    except Suspend as stop:
        yield Io(_release, ex, str(stop))
        if ex.stop_reason == "cancelled" or (yield Io(_was_cancelled, ex)):
            raise RunFailed(f"run {request.run_id!r} was cancelled") from None
        raise StoreError(f"run {request.run_id!r}: {stop}") from None
    except BaseException as exc:  # KeyboardInterrupt, SystemExit, CancelledError, lost database
        yield Io(_release, ex, f"interrupted: {one_line(exc)}")
        raise
    finally:
        heartbeat.stop()
        ex.close()
        if not synchronous:
            yield Io(_quietly, journal_db.set_durability, conn, True)


def _body_value(request: RunRequest) -> Steps[Any]:
    """The body's value, once what it left behind ended: step tasks still running are
    cancelled, queued commits written, and an awaitable it never awaited is an error."""
    try:
        value = yield Call(request.body, request.args, request.kwargs, body=True)
    except BaseException:
        yield Settle()
        raise
    forgotten = yield Settle()
    if forgotten:
        listed = ", ".join(forgotten[:3]) + (", …" if len(forgotten) > 3 else "")
        raise UsageError(f"run {request.run_id!r}: the body never awaited {listed}, so it did "
                         "not run; in an async body write `await` before the call")
    return value


def _input_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The run's input as ``on_failure`` sees it: the one argument, or (args, kwargs)."""
    if len(args) == 1 and not kwargs:
        return args[0]
    if not args and not kwargs:
        return None
    return (args, kwargs)


def _placed_result(store: Store, request: RunRequest,
                   value: Any) -> tuple[Placed, str | None]:
    """The run's result encoded once (a large one stored in chunks now), and why it was
    not (``result_optional``)."""
    try:
        return payloads.encode(store, value, what="result", owner=f"run {request.run_id!r}"), None
    except PayloadError as exc:
        if not request.result_optional:
            raise
        return payloads.place(codec.encode(None, what="result")), str(exc)


def _finish(ex: Execution, status: str, result: Placed | None = None,
            error: BaseException | None = None) -> None:
    placed = result
    with ex.lock:
        finished = runs_db.finish(
            ex.conn, run_id=ex.run_id, owner=ex.owner, status=status,
            result=placed.inline if placed else None, hash=placed.hash if placed else None,
            data=placed.data if placed else None,
            error=None if error is None else one_line(error),
            error_payload=None if error is None else encode_error(error))
    if not finished:
        raise Suspend(ex.stop_reason or f"run {ex.run_id!r} is no longer owned by this process")


def _release(ex: Execution, reason: str) -> None:
    """Give the run up without ending it; the database may be what failed (then the lease
    expires), and a failure here never hides the error being raised."""
    with ex.lock:
        _quietly(runs_db.release, ex.conn, ex.run_id, ex.owner, reason)


def _was_cancelled(ex: Execution) -> bool:
    """A cancel that came after the heartbeat last looked: the run's row tells."""
    with ex.lock:
        status: str | None = _quietly(runs_db.status, ex.conn, ex.run_id)
    return status == "cancelled"


def _quietly(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` during clean-up: a database error is dropped (None)."""
    try:
        return call(*args)
    except StoreError:
        return None


def stored_outcome(conn: Connection, row: RunRow) -> Any:
    """The value of an ended run, or its error raised."""
    what = f"run {row.run_id!r}"
    if row.status == "completed":
        return payloads.value(conn, row.result, row.result_hash, what=f"result of {what}")
    error: BaseException | None = None
    if row.error_payload is not None:
        try:
            error = codec.decode(row.error_payload, what=f"error of {what}")
        except PayloadError:
            error = None
    raise RunFailed(f"{what} {row.status}: {row.error or 'no error recorded'}") from error
