"""``@durable`` for scripts, and the Run API to look at and steer runs from anywhere."""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, BinaryIO, Callable

from .. import codec
from ..errors import EventAlreadySent, RunBusy, RunNotFound, StoreError, UsageError
from ..store import queries, results
from ..store.connection import Store, get_store
from ..store.notify import listener
from . import hooks
from .execute import BodyResult, Options, execute, stored_outcome
from .journal import check_name
from .model import Report

TERMINAL = ("completed", "failed", "cancelled")


class DurableFunction:
    """A function made a durable body by ``@durable(name)``.

    ``fn(*args, run_id=None, restart=False, wait=True, **kwargs)`` executes the body as
    run ``run_id`` (default: the durable name) and returns its result. ``last_report``
    tells what the last call replayed and executed.
    """

    def __init__(self, fn: Callable, name: str, *, options: Options,
                 on_failure: Callable[[Any, BaseException], Any] | None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.durable_name = name
        self.options = options
        self.on_failure = on_failure
        self.last_report: Report | None = None

    def __call__(self, *args: Any, run_id: str | None = None, restart: bool = False,
                 wait: bool = True, **kwargs: Any) -> Any:
        outcome = self.execute(args, kwargs, run_id=run_id, restart=restart, wait=wait)
        return outcome.value

    def detach(self, *args: Any, run_id: str | None = None, restart: bool = False,
               **kwargs: Any) -> Run:
        """Hand the run to the workers (the body must pickle); returns the Run to follow."""
        outcome = self.execute(args, kwargs, run_id=run_id, restart=restart, detach=True)
        return Run(outcome.run_id)

    def execute(self, args: tuple = (), kwargs: dict | None = None, *, run_id: str | None = None,
                restart: bool = False, wait: bool = True, detach: bool = False) -> BodyResult:
        try:
            source = inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = None
        outcome = execute(self.fn, args, kwargs, name=self.durable_name, run_id=run_id,
                          options=self.options, on_failure=self.on_failure, restart=restart,
                          wait=wait, body_source=source, detach=detach)
        self.last_report = outcome.report
        return outcome


def durable(name: str | Callable | None = None, *, on_change: str = "rerun",
            on_failure: Callable[[Any, BaseException], Any] | None = None,
            durability: str = "sync", namespace: str | None = None):
    """Make a function a durable body: ``@durable("report-batch")``.

    ``on_change``: what a completed step whose code or arguments changed does on replay
    (``rerun``, ``error``, ``ignore``). ``on_failure(input, error)``: its return value
    becomes the result of a run whose body raised. ``durability``: ``sync`` commits wait
    for the WAL flush; ``async`` survives a crash of the process but not of the server.
    """
    options = Options(on_change=on_change, durability=durability, namespace=namespace)
    if callable(name):
        return DurableFunction(name, name.__name__, options=options, on_failure=on_failure)
    if name is not None and (not isinstance(name, str) or not name):
        raise UsageError(f"@durable name must be a non-empty string, not {name!r}")
    return lambda fn: DurableFunction(fn, name or fn.__name__, options=options, on_failure=on_failure)


class Run:
    """A run, by id, as stored: look at it or steer it from any process."""

    def __init__(self, run_id: str, store: Store | None = None) -> None:
        self.run_id = run_id
        self.store = store or get_store()
        self._stored()  # raises RunNotFound

    def __repr__(self) -> str:
        return f"<Run {self.run_id!r} {self.status}>"

    def row(self) -> dict:
        """The run as stored, with the counts of its steps (done, failed, total)."""
        return self._stored("get_run")

    def _stored(self, query: str = "get_run_row") -> dict:
        with self.store.connection() as conn:
            row = queries.one(conn, query, run_id=self.run_id)
        if row is None:
            raise RunNotFound(f"run {self.run_id!r} does not exist")
        return row

    @property
    def status(self) -> str:
        return self._stored()["status"]

    @property
    def generation(self) -> int:
        return self._stored()["generation"]

    @property
    def steps(self) -> list[dict]:
        """The steps of the current generation, in execution order."""
        with self.store.connection() as conn:
            return queries.all_rows(conn, "list_steps", run_id=self.run_id,
                                    generation=self.generation)

    def attempts(self, step: str) -> list[dict]:
        """The attempts of ``step`` that did not end it (retried or superseded)."""
        with self.store.connection() as conn:
            return queries.all_rows(conn, "step_attempts", run_id=self.run_id,
                                    generation=self.generation, name=step)

    def result(self, timeout: float | None = None) -> Any:
        """The run's result once it ended (waiting up to ``timeout`` s); raises RunFailed."""
        return stored_outcome(self.store, self._ended(timeout))

    def save_result(self, out: BinaryIO, timeout: float | None = None) -> str:
        """Write the run's result to ``out`` without unpickling it, once it ended: a
        ``bytes`` result as its bytes, a ``str`` as UTF-8, anything else as a pickle with
        its buffers in band. Returns which (``bytes``, ``str``, ``pickle``); raises RunFailed."""
        row = self._ended(timeout)
        if row["status"] != "completed":
            stored_outcome(self.store, row)  # raises the run's failure
        with self.store.connection() as conn:
            return results.export(conn, row["result"], row["result_hash"], out,
                                   what=f"result of run {self.run_id!r}")

    def _ended(self, timeout: float | None) -> dict:
        """The run's row once it ended, waiting up to ``timeout`` s (TimeoutError)."""
        notes = listener(self.store)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            token = notes.token(self.run_id)
            row = self._stored()
            if row["status"] in TERMINAL:
                return row
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {self.run_id!r} is still {row['status']} after {timeout} s")
            notes.wait(self.run_id, token, min(left, 5.0))

    def _step_row(self, conn, name: str) -> dict:
        row = queries.one(conn, "get_step", run_id=self.run_id, generation=self.generation,
                          name=name)
        if row is None:
            raise UsageError(f"run {self.run_id!r} has no step {name!r}")
        return row

    def step_result(self, name: str) -> Any:
        """The stored result of a completed step (its error raised if it failed)."""
        with self.store.connection() as conn:
            row = self._step_row(conn, name)
            if row["status"] == "completed":
                return results.value(conn, row["result"], row["result_hash"],
                                      what=f"result of step {name!r}")
        if row["status"] == "failed" and row["error_payload"] is not None:
            raise codec.decode(row["error_payload"], what=f"error of step {name!r}")
        raise UsageError(f"step {name!r} of run {self.run_id!r} is {row['status']}, not completed")

    def cancel(self) -> bool:
        """Cancel the run: its body stops at its next step, unclaimed children are not run."""
        with self.store.connection() as conn:
            return queries.one(conn, "cancel_run", run_id=self.run_id) is not None

    def restart(self) -> int:
        """Start the run afresh in a new generation (the old one stays as history)."""
        with self.store.connection() as conn:
            row = queries.one(conn, "restart_run", run_id=self.run_id)
        if row is None:
            raise RunBusy(f"run {self.run_id!r} is being executed; cancel it or wait for it first")
        return row["generation"]

    def rerun(self, steps: list[str] | str) -> list[str]:
        """Forget the named steps, so that the next execution of the body runs them again."""
        names = [steps] if isinstance(steps, str) else list(steps)
        with self.store.connection() as conn:
            gone = [r["name"] for r in queries.all_rows(conn, "forget_steps", run_id=self.run_id,
                                                        names=names)]
            missing = sorted(set(names) - set(gone))
            if missing:
                raise UsageError(f"run {self.run_id!r} has no step {', '.join(map(repr, missing))}")
            queries.execute(conn, "reopen_run", run_id=self.run_id)
        return gone

    def retry_step(self, name: str) -> None:
        """Run a failed step again: at the next execution, or now by a worker for a child."""
        with self.store.connection() as conn:
            row = self._step_row(conn, name)
            if row["status"] != "failed":
                raise UsageError(f"step {name!r} of run {self.run_id!r} is {row['status']}; "
                                 "only a failed step can be retried")
            if row["kind"] == "child":
                queries.execute(conn, "retry_child", run_id=self.run_id,
                                generation=self.generation, name=name)
            else:
                queries.execute(conn, "forget_steps", run_id=self.run_id, names=[name])
            queries.execute(conn, "reopen_run", run_id=self.run_id)

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


def runs(status: str | None = None, name: str | None = None, limit: int = 50) -> list[dict]:
    """Runs, newest first: id, name, status, steps done/total, owner, times."""
    if status is not None and status not in ("pending", "running", "waiting", *TERMINAL):
        raise UsageError(f"unknown run status {status!r}")
    with get_store().connection() as conn:
        return queries.all_rows(conn, "list_runs", status=status, name=name, limit=limit)


def send_event(run_id: str, name: str, payload: Any = None, *, store: Store | None = None) -> None:
    """Deliver event ``name`` to run ``run_id``; the first event of a name wins."""
    import psycopg

    if not isinstance(name, str) or not name:
        raise UsageError(f"an event needs a non-empty name, not {name!r}")
    check_name("event name", name)
    if isinstance(run_id, str):
        check_name("run id", run_id)
    data = codec.encode(payload, what="payload", owner=f"event {name!r}")
    store = store or get_store()
    try:
        with store.connection() as conn:
            queries.execute(conn, "insert_event", run_id=run_id, name=name, payload=data)
    except psycopg.errors.ForeignKeyViolation:
        raise RunNotFound(f"cannot send event {name!r}: run {run_id!r} does not exist") from None
    except psycopg.errors.UniqueViolation:
        raise EventAlreadySent(f"event {name!r} was already sent to run {run_id!r}; "
                               "events are immutable once sent") from None
    except psycopg.Error as exc:
        raise StoreError(f"cannot send event {name!r} to run {run_id!r}: {exc}") from exc
