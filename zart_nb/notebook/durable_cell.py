"""``%%zart_durable``: a cell executed as a durable body, in the user's namespace.

The cell goes to the same engine as ``@durable``, through ``replay``: executing a
finished cell again replays its steps, so that its variables come back in this kernel.
When another process owns the run, this kernel attaches, waits for it to end, then
replays it locally ("ends with the same variables"). Ctrl-C releases the run (the
journal stays as it was after the last committed step) and says how to resume.

A cell that uses top-level ``await`` is an async body: the magic returns a coroutine
that IPython awaits on the kernel's own event loop (awaiting.py explains how), and
Ctrl-C cancels it there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine.execute import BodyResult, RunRequest, detach
from ..engine.execution import Execution, current
from ..engine.model import OnChange, Options
from ..engine.runs import Run
from ..engine.worker import LocalPool
from ..errors import PayloadError, RunFailed, StoreError, UsageError
from ..frames import without_library_frames
from ..store.records import RunRow
from .awaiting import check_awaited, interruptible
from .cells import CellCode, compile_cell
from .front import (
    CellError,
    is_hidden,
    replay_here,
    replay_here_async,
    say,
    show_progress,
    unchained,
)


class CellBody:
    """The body of a ``%%zart_durable`` cell: its code executed in a namespace.

    Pickled (into the run's ``body``) as its Python source, plus, for ``--detach``, the
    values of the names it reads (``carry``): unpickled in a worker it executes in a
    fresh namespace holding those. In the kernel it executes in the user's namespace.
    """

    def __init__(self, python: str, cell: CellCode | None = None,
                 namespace: dict[str, Any] | None = None,
                 carry: dict[str, Any] | None = None) -> None:
        self.python = python
        self.cell = cell
        self.namespace = namespace
        self.carry = carry
        self.started = False
        self.execution: Execution | None = None  # the engine's execution while the body runs

    def __reduce__(self) -> tuple[Any, ...]:
        return (CellBody, (self.python, None, None, self.carry))

    @property
    def is_async(self) -> bool:
        """The cell awaits: the engine awaits the coroutine that calling it returns."""
        return self.compiled().is_async

    def compiled(self) -> CellCode:
        if self.cell is None:
            self.cell = compile_cell(self.python, filename="<zart cell>")
        return self.cell

    def __call__(self) -> Any:
        __tracebackhide__ = True
        self.started = True
        self.execution = current()
        cell = self.compiled()
        namespace = self.namespace
        if namespace is None:
            namespace = {"__name__": "__main__", **(self.carry or {})}
        return cell.arun(namespace) if cell.is_async else cell.run(namespace)


@dataclass
class DurableRequest:
    name: str
    run_id: str | None = None
    restart: bool = False
    workers: int | None = None
    timeout: float | None = None
    timeout_text: str | None = None
    on_change: OnChange = "rerun"
    on_failure: Callable[[Any, BaseException], Any] | None = None
    detach: bool = False
    executor: Any = None  # where its waits run children (--executor)


def run_durable_cell(shell: Any, source: str, request: DurableRequest) -> Any:
    """Execute ``source`` as the body of run ``request.run_id`` (default: the name); a
    cell that awaits returns a coroutine, for IPython to await."""
    __tracebackhide__ = True
    run_id = request.run_id or request.name
    cell = compile_cell(source, shell)
    if request.detach:
        return _detach(shell, source, cell, request, run_id)
    running = _DurableCell(shell, source, cell, request, run_id)
    if cell.is_async:
        check_awaited(shell, "%%zart_durable")
        return running.awaited()
    running.start()
    try:
        outcome = replay_here(running.make_request, restart=request.restart,
                              on_attach=running.on_attach)
    except BaseException as exc:
        raise running.failure(exc)  # noqa: B904 (the user's own error, or one line of ours)
    finally:
        running.stop()
    return running.shown(outcome)


class _DurableCell:
    """One execution of a ``%%zart_durable`` cell: what the sync and the awaiting ways
    share (attaching, the pool and deadline, the messages and errors)."""

    def __init__(self, shell: Any, source: str, cell: CellCode, request: DurableRequest,
                 run_id: str) -> None:
        self.source = source
        self.request = request
        self.run_id = run_id
        self.body = CellBody(cell.python, cell, shell.user_ns)
        self.attached: list[RunRow] = []
        self.pool: LocalPool | None = None
        self.timer: _Deadline | None = None

    def on_attach(self, row: RunRow) -> None:
        self.attached.append(row)
        started = row.started_at
        when = f", started {started:%Y-%m-%d %H:%M:%S}" if started is not None else ""
        say(f"attached to run {self.run_id!r} owned by {row.owner}{when}; "
            "waiting for it to end, then replaying it here")
        show_progress(self.run_id)

    def make_request(self) -> RunRequest:
        return RunRequest(self.body, self.request.name, self.run_id,
                          options=Options(on_change=self.request.on_change),
                          on_failure=self.request.on_failure, source=lambda: self.source,
                          resumable=True, result_optional=True, executor=self.request.executor)

    async def awaited(self) -> Any:
        __tracebackhide__ = True
        self.start()
        try:
            async with interruptible():
                outcome = await replay_here_async(self.make_request,
                                                  restart=self.request.restart,
                                                  on_attach=self.on_attach)
        except BaseException as exc:
            raise self.failure(exc)  # noqa: B904 (the user's own error, or one line of ours)
        finally:
            self.stop()
        return self.shown(outcome)

    def start(self) -> None:
        """The run's local pool and its deadline (``--workers``, ``--timeout``)."""
        request = self.request
        self.pool = LocalPool(request.workers).start() if request.workers else None
        self.timer = _Deadline(self.run_id, request, self.body) if request.timeout else None

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.pool is not None:
            self.pool.stop()

    def failure(self, exc: BaseException) -> BaseException:
        """What the cell raises for ``exc``: the user's own error with our frames cut out,
        or one line of ours."""
        run_id = self.run_id
        if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):  # Ctrl-C
            if not self.body.started:
                say(f"stopped waiting for run {run_id!r}; it goes on in its owner")
            else:
                say(f"run {run_id!r} interrupted; the journal keeps every committed step: "
                    "run the cell again to resume")
            return exc
        if isinstance(exc, RunFailed):
            if self.timer is not None and self.timer.fired:
                return unchained(CellError(
                    f"run {run_id!r} was cancelled: it passed its --timeout of "
                    f"{self.request.timeout_text}; run the cell with --restart to start it again"))
            if self.attached:
                return unchained(CellError(f"{exc}; run the cell again to retry its failed steps"))
            return unchained(CellError(str(exc)))
        if isinstance(exc, StoreError):
            return unchained(CellError(str(exc)))
        if isinstance(exc, Exception) and not isinstance(exc, UsageError):
            return without_library_frames(exc)  # the cell's own error (or a step's)
        return exc

    def shown(self, outcome: BodyResult) -> Any:
        prefix = "attached, then replayed here: " if self.attached else ""
        say(f"run {self.run_id!r}: {prefix}{outcome.report.summary()}")
        if outcome.unstored is not None:
            say(f"the result ({type(outcome.value).__name__}) cannot be stored, so the run's "
                f"result is None: {outcome.unstored}")
        return outcome.value


def _detach(shell: Any, source: str, cell: CellCode, request: DurableRequest, run_id: str) -> None:
    """Hand the cell to the worker fleet with the values of the names it reads."""
    ns = shell.user_ns
    carry = {n: ns[n] for n in cell.reads if n in ns and not is_hidden(shell, n)}
    body = CellBody(cell.python, None, None, carry)
    if request.workers:
        _detached_pools.append(LocalPool(request.workers).start())
    try:
        detach(RunRequest(body, request.name, run_id, options=Options(on_change=request.on_change),
                          on_failure=request.on_failure, source=lambda: source),
               restart=request.restart)
    except (PayloadError, StoreError) as exc:
        raise CellError(str(exc)) from None
    workers = "" if request.workers else " (start some with %zart_worker start or `zart-nb worker`)"
    say(f"run {run_id!r} handed to the workers{workers}; %zart_attach {run_id} follows it, "
        "and running this cell without --detach once it ended brings its variables here")
    if request.timeout:
        _Deadline(run_id, request)  # cancels the run when its time is up, even detached


_detached_pools: list[LocalPool] = []  # pools started for detached runs live as long as the kernel


class _Deadline:
    """``--timeout``: cancels the run once its time is up (the body stops at its next step)."""

    def __init__(self, run_id: str, request: DurableRequest, body: CellBody | None = None) -> None:
        self.run_id = run_id
        self.body = body
        self.fired = False
        self._timer = threading.Timer(request.timeout or 0.0, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        try:
            self.fired = Run(self.run_id).cancel()
        except Exception:  # the run may not exist yet or the database is away
            self.fired = False
        ex = self.body.execution if self.body is not None else None
        if self.fired and ex is not None and ex.stop_reason is None:
            ex.stop_reason = "cancelled"  # stop at the next step, not at the next heartbeat

    def cancel(self) -> None:
        self._timer.cancel()
