"""``@durable`` for scripts, and the Run API to look at and steer runs from anywhere.

Each method of ``Run`` takes one pool connection for what it does, and each operation
that changes a run (cancel, restart, rerun, retry_step) validates first and changes
everything in one transaction, or nothing.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, BinaryIO, overload

from .. import codec
from ..errors import RunBusy, RunNotFound, UsageError
from ..names import check_name
from ..store import events as events_db
from ..store import journal as journal_db
from ..store import payloads
from ..store import runs as runs_db
from ..store.connection import Store, get_store
from ..store.notify import listener
from ..store.records import RunRow, StoredBody
from . import hooks
from .execute import BodyResult, RunRequest, detach, execute, execute_async, stored_outcome
from .lane import is_async_callable
from .model import RUN_STATUSES, TERMINAL_STATUSES, OnChange, Options, Report

MAX_LISTED = 10_000


class DurableFunction:
    """A function made a durable body by ``@durable(name)``.

    ``fn(*args, run_id=None, restart=False, wait=True, **kwargs)`` executes the body as
    run ``run_id`` (default: the durable name) and returns its result. ``last_report``
    tells what the last call replayed and executed. On an ``async def`` the call returns
    an awaitable (``await fn(...)``, ``asyncio.run(fn(...))`` in a script): the body runs
    on the caller's event loop.
    """

    def __init__(self, fn: Callable[..., Any], name: str, *, options: Options,
                 on_failure: Callable[[Any, BaseException], Any] | None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.durable_name = name
        self.options = options
        self.on_failure = on_failure
        self.last_report: Report | None = None
        self.is_async = is_async_callable(fn)

    def __call__(self, *args: Any, run_id: str | None = None, restart: bool = False,
                 wait: bool = True, **kwargs: Any) -> Any:
        if self.is_async:
            return self._awaited(args, kwargs, run_id=run_id, restart=restart, wait=wait)
        return self.execute(args, kwargs, run_id=run_id, restart=restart, wait=wait).value

    async def _awaited(self, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                       run_id: str | None, restart: bool, wait: bool) -> Any:
        outcome = await self.execute_async(args, kwargs, run_id=run_id, restart=restart,
                                           wait=wait)
        return outcome.value

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None,
                run_id: str | None) -> RunRequest:
        return RunRequest(self.fn, self.durable_name,
                          self.durable_name if run_id is None else run_id, args, kwargs or {},
                          self.options, self.on_failure)

    def detach(self, *args: Any, run_id: str | None = None, restart: bool = False,
               **kwargs: Any) -> Run:
        """Hand the run to the workers (the body must pickle); returns the Run to follow."""
        request = self.request(args, kwargs, run_id)
        detach(request, restart=restart)
        return Run(request.run_id)

    def execute(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, *,
                run_id: str | None = None, restart: bool = False,
                wait: bool = True) -> BodyResult:
        """Execute the body as a run from sync code (an async body runs to its end on an
        event loop of its own); the BodyResult with the report."""
        outcome = execute(self.request(args, kwargs, run_id), restart=restart, wait=wait)
        self.last_report = outcome.report
        return outcome

    async def execute_async(self, args: tuple[Any, ...] = (),
                            kwargs: dict[str, Any] | None = None, *, run_id: str | None = None,
                            restart: bool = False, wait: bool = True) -> BodyResult:
        """``execute``, awaited on the running event loop."""
        outcome = await execute_async(self.request(args, kwargs, run_id), restart=restart,
                                      wait=wait)
        self.last_report = outcome.report
        return outcome


@overload
def durable(name: Callable[..., Any], *, on_change: OnChange = "rerun",
            on_failure: Callable[[Any, BaseException], Any] | None = None,
            durability: str = "sync", namespace: str | None = None) -> DurableFunction: ...


@overload
def durable(name: str | None = None, *, on_change: OnChange = "rerun",
            on_failure: Callable[[Any, BaseException], Any] | None = None,
            durability: str = "sync",
            namespace: str | None = None) -> Callable[[Callable[..., Any]], DurableFunction]: ...


def durable(name: str | Callable[..., Any] | None = None, *, on_change: OnChange = "rerun",
            on_failure: Callable[[Any, BaseException], Any] | None = None,
            durability: str = "sync", namespace: str | None = None,
            ) -> DurableFunction | Callable[[Callable[..., Any]], DurableFunction]:
    """Make a function a durable body: ``@durable("report-batch")``.

    ``on_change``: what a completed step whose code or arguments changed does on replay
    (``rerun``, ``error``, ``ignore``). ``on_failure(input, error)``: its return value
    becomes the result of a run whose body raised. ``durability``: ``sync`` commits wait
    for the WAL flush; ``async`` survives a crash of the process but not of the server.
    """
    options = Options(on_change=on_change, durability=durability,  # type: ignore[arg-type]
                      namespace=namespace)
    if on_failure is not None and not callable(on_failure):
        raise UsageError(f"@durable on_failure must be a function, not {type(on_failure).__name__}")
    if callable(name):
        return DurableFunction(name, name.__name__, options=options, on_failure=on_failure)
    if name is not None:
        check_name("@durable name", name)

    def wrap(fn: Callable[..., Any]) -> DurableFunction:
        if not callable(fn):
            raise UsageError(f"@durable decorates a function, not {type(fn).__name__}")
        return DurableFunction(fn, name or fn.__name__, options=options, on_failure=on_failure)

    return wrap


class Run:
    """A run, by id, as stored: look at it or steer it from any process."""

    def __init__(self, run_id: str, store: Store | None = None) -> None:
        self.run_id = check_name("run id", run_id)
        self.store = store or get_store()
        with self.store.connection() as conn:
            if runs_db.status(conn, self.run_id) is None:
                raise self._missing()

    def __repr__(self) -> str:
        return f"<Run {self.run_id!r} {self.status}>"

    def _missing(self) -> RunNotFound:
        return RunNotFound(f"run {self.run_id!r} does not exist")

    def row(self) -> dict[str, Any]:
        """The run as stored, with the counts of its steps (done, failed, total)."""
        with self.store.connection() as conn:
            row = runs_db.detail(conn, self.run_id)
        if row is None:
            raise self._missing()
        return row

    def stored_body(self) -> StoredBody:
        """What the run keeps to be executed again: its pickled body, source, options."""
        with self.store.connection() as conn:
            stored = runs_db.stored_body(conn, self.run_id)
        if stored is None:
            raise self._missing()
        return stored

    @property
    def status(self) -> str:
        with self.store.connection() as conn:
            status = runs_db.status(conn, self.run_id)
        if status is None:
            raise self._missing()
        return status

    @property
    def generation(self) -> int:
        generation: int = self.row()["generation"]
        return generation

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps of the current generation, in execution order."""
        with self.store.connection() as conn:
            return [s.as_dict() for s in journal_db.steps(conn, self.run_id)]

    def attempts(self, step: str | None = None) -> list[dict[str, Any]]:
        """The attempts of ``step`` (of every step when None) that did not end it: retried,
        failed, or superseded by a rerun; by step name, then attempt."""
        if step is not None:
            check_name("step name", step)
        with self.store.connection() as conn:
            return [a.as_dict() for a in journal_db.attempts(conn, self.run_id, step)]

    def result(self, timeout: float | None = None) -> Any:
        """The run's result once it ended (waiting up to ``timeout`` s); raises RunFailed."""
        row = self._ended(timeout)
        with self.store.connection() as conn:
            return stored_outcome(conn, row)

    def save_result(self, out: BinaryIO, timeout: float | None = None) -> str:
        """Write the run's result to ``out`` without unpickling it, once it ended: a
        ``bytes`` result as its bytes, a ``str`` as UTF-8, anything else as a pickle with
        its buffers in band. Returns which (``bytes``, ``str``, ``pickle``); raises
        RunFailed."""
        row = self._ended(timeout)
        with self.store.connection() as conn:
            if row.status != "completed":
                stored_outcome(conn, row)  # raises the run's failure
            return payloads.export(conn, row.result, row.result_hash, out,
                                   what=f"result of run {self.run_id!r}")

    def _ended(self, timeout: float | None) -> RunRow:
        """The run's row once it ended, waiting up to ``timeout`` s (TimeoutError)."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or math.isnan(timeout) or timeout < 0):
            raise UsageError(f"Run.result: timeout must be a number of seconds >= 0, not {timeout!r}")
        notes = listener(self.store)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            token = notes.token(self.run_id)
            with self.store.connection() as conn:
                row = runs_db.get(conn, self.run_id)
            if row is None:
                raise self._missing()
            if row.status in TERMINAL_STATUSES:
                return row
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {self.run_id!r} is still {row.status} after {timeout} s")
            notes.wait(self.run_id, token, min(left, 5.0))

    def step_result(self, name: str) -> Any:
        """The stored result of a completed step (its error raised if it failed)."""
        check_name("step name", name)
        what = f"step {name!r} of run {self.run_id!r}"
        with self.store.connection() as conn:
            row = journal_db.step(conn, self.run_id, name)
            if row is None:
                raise UsageError(f"run {self.run_id!r} has no step {name!r}")
            if row.status == "completed":
                return payloads.value(conn, row.result, row.result_hash, what=f"result of {what}")
        if row.status == "failed" and row.error_payload is not None:
            raise codec.decode(row.error_payload, what=f"error of {what}")
        raise UsageError(f"{what} is {row.status}, not completed")

    def cancel(self) -> bool:
        """Cancel the run: its body stops at its next step, unclaimed children are not run."""
        with self.store.connection() as conn:
            return runs_db.cancel(conn, self.run_id)

    def restart(self) -> int:
        """Start the run afresh in a new generation (the old one stays as history)."""
        with self.store.connection() as conn:
            generation = runs_db.restart(conn, self.run_id)
        if generation is None:
            raise RunBusy(f"run {self.run_id!r} is being executed; cancel it or wait for it first")
        return generation

    def rerun(self, steps: list[str] | str) -> list[str]:
        """Forget the named steps, so that the next execution of the body runs them again.

        Every name is checked first: one unknown name changes nothing.
        """
        names = [steps] if isinstance(steps, str) else list(steps)
        if not names:
            raise UsageError(f"rerun of run {self.run_id!r} needs at least one step name")
        for name in names:
            check_name("step name", name)
        with self.store.connection() as conn:
            return runs_db.rerun(conn, self.run_id, names)

    def retry_step(self, name: str) -> None:
        """Run a failed step again: at the next execution, or now by a worker for a child."""
        check_name("step name", name)
        with self.store.connection() as conn:
            runs_db.retry_step(conn, self.run_id, name)

    def send_event(self, name: str, payload: Any = None) -> None:
        send_event(self.run_id, name, payload, store=self.store)

    def progress(self) -> Any:
        """The run's live progress widget (built by the notebook layer, see hooks)."""
        if hooks.make_progress is None:
            raise UsageError("progress widgets need the notebook layer (import zart_nb)")
        return hooks.make_progress(self.run_id, self.store)


def run(run_id: str) -> Run:
    """The run ``run_id`` (RunNotFound if there is none)."""
    return Run(run_id)


def runs(status: str | None = None, name: str | None = None,
         limit: int = 50) -> list[dict[str, Any]]:
    """Runs, newest first: id, name, status, steps done/total, owner, times."""
    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"unknown run status {status!r} (one of {', '.join(RUN_STATUSES)})")
    if name is not None:
        check_name("durable name", name)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LISTED:
        raise UsageError(f"runs(limit=...) must be a whole number from 1 to {MAX_LISTED}, "
                         f"not {limit!r}")
    with get_store().connection() as conn:
        return [r.as_dict() for r in runs_db.listing(conn, status=status, name=name, limit=limit)]


def send_event(run_id: str, name: str, payload: Any = None, *, store: Store | None = None) -> None:
    """Deliver event ``name`` to run ``run_id``; the first event of a name wins."""
    check_name("event name", name)
    check_name("run id", run_id)
    data = codec.encode(payload, what="payload", owner=f"event {name!r}")
    with (store or get_store()).connection() as conn:
        events_db.send(conn, run_id, name, data)
