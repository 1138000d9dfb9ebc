"""``%%zart_durable``: a cell executed as a durable body, in the user's namespace.

The cell goes to the same executor as ``@durable`` (``engine.execute.execute``) with
``replay_completed=True``: executing a finished cell again replays its steps, so that
its variables come back in this kernel. When another process owns the run, this
kernel attaches, waits for it to end, then replays it locally ("ends with the same
variables"). Ctrl-C releases the run (the journal stays as it was after the last
committed step) and says how to resume.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .. import codec
from ..engine.execute import Options, execute
from ..errors import PayloadError, RunFailed, StoreError, UsageError
from .cells import CellCode, compile_cell, without_library_frames

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h|d)?\s*$")
_UNITS = {None: 1, "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
MAX_ATTACH_ROUNDS = 20


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``1.5h``, ``2d``, ``500ms`` or a plain number of seconds."""
    match = _DURATION.match(text or "")
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"--timeout {text!r} is not a duration (like 90s, 30m, 1.5h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def say(message: str) -> None:
    """One line of the notebook front, on stdout."""
    print(f"zart: {message}", flush=True)


class CellBody:
    """The body of a ``%%zart_durable`` cell: its code executed in a namespace.

    Pickled (into the run's ``body``) as its Python source, plus, for ``--detach``, the
    values of the names it reads (``carry``): unpickled in a worker it executes in a
    fresh namespace holding those. In the kernel it executes in the user's namespace.
    """

    def __init__(self, python: str, cell: CellCode | None = None, namespace: dict | None = None,
                 carry: dict | None = None) -> None:
        self.python = python
        self.cell = cell
        self.namespace = namespace
        self.carry = carry
        self.shown: Any = None  # the value shown when the real one could not be stored
        self.unpicklable: str | None = None
        self.started = False
        self.execution = None  # the engine's Execution while the body runs

    def __reduce__(self):
        return (CellBody, (self.python, None, None, self.carry))

    def __call__(self) -> Any:
        __tracebackhide__ = True  # noqa: F841
        from ..engine.journal import current

        self.started = True
        self.execution = current()
        cell = self.cell or compile_cell(self.python, filename="<zart cell>")
        namespace = self.namespace
        if namespace is None:
            namespace = {"__name__": "__main__", **(self.carry or {})}
        value = cell.run(namespace)
        self.shown, self.unpicklable = None, None
        if value is not None:
            try:
                codec.encode(value, what="result")
            except PayloadError as exc:
                self.shown, self.unpicklable = value, str(exc)
                return None
        return value


@dataclass
class DurableRequest:
    name: str
    run_id: str | None = None
    restart: bool = False
    workers: int | None = None
    timeout: float | None = None
    timeout_text: str | None = None
    on_change: str = "rerun"
    on_failure: Callable | None = None
    detach: bool = False


def run_durable_cell(shell, source: str, request: DurableRequest) -> Any:
    """Execute ``source`` as the body of run ``request.run_id`` (default: the name)."""
    __tracebackhide__ = True  # noqa: F841
    run_id = request.run_id or request.name
    options = Options(on_change=request.on_change)
    cell = compile_cell(source, shell)
    if request.detach:
        return _detach(shell, source, cell, request, run_id, options)
    body = CellBody(cell.python, cell, shell.user_ns)
    attached: list[dict] = []

    def on_attach(row: dict) -> None:
        attached.append(row)
        started = row.get("started_at")
        when = f", started {started:%Y-%m-%d %H:%M:%S}" if started is not None else ""
        say(f"attached to run {run_id!r} owned by {row.get('owner')}{when}; "
            "waiting for it to end, then replaying it here")
        _show_progress(run_id)

    pool = _start_pool(request.workers)
    timer = _Deadline(run_id, request, body) if request.timeout else None
    restart = request.restart
    try:
        for _ in range(MAX_ATTACH_ROUNDS):
            outcome = execute(body, name=request.name, run_id=run_id, options=options,
                              restart=restart, replay_completed=True, body_source=source,
                              on_failure=request.on_failure, on_attach=on_attach,
                              keep_body=True)
            restart = False
            if not outcome.attached:
                break
        else:
            raise UsageError(f"run {run_id!r} kept being executed by other processes; "
                             "try again later")
    except KeyboardInterrupt:
        if not body.started:
            say(f"stopped waiting for run {run_id!r}; it goes on in its owner")
        else:
            say(f"run {run_id!r} interrupted; the journal keeps every committed step: "
                "run the cell again to resume")
        raise
    except RunFailed as exc:
        if timer is not None and timer.fired:
            raise CellError(f"run {run_id!r} was cancelled: it passed its --timeout of "
                            f"{request.timeout_text}; run the cell with --restart to start "
                            "it again") from None
        if attached:
            raise CellError(f"{exc}; run the cell again to retry its failed steps") from None
        raise CellError(str(exc)) from None
    except UsageError:
        raise
    except StoreError as exc:
        raise CellError(str(exc)) from None
    except Exception as exc:  # the cell's own error (or a step's): its traceback, ours cut out
        raise without_library_frames(exc)
    finally:
        if timer is not None:
            timer.cancel()
        if pool is not None:
            pool.stop()
    prefix = "attached, then replayed here: " if attached else ""
    say(f"run {run_id!r}: {prefix}{outcome.report.summary()}")
    if body.unpicklable is not None:
        say(f"the result ({type(body.shown).__name__}) cannot be stored, so the run's "
            f"result is None: {body.unpicklable}")
        return body.shown
    return outcome.value


def _detach(shell, source: str, cell: CellCode, request: DurableRequest, run_id: str,
            options: Options) -> None:
    """Hand the cell to the worker fleet with the values of the names it reads."""
    from .step_cells import _hidden

    ns = shell.user_ns
    carry = {n: ns[n] for n in cell.reads if n in ns and not _hidden(shell, n)}
    body = CellBody(cell.python, None, None, carry)
    if request.workers:
        _detached_pools.append(_start_pool(request.workers))
    try:
        execute(body, name=request.name, run_id=run_id, options=options, restart=request.restart,
                body_source=source, on_failure=request.on_failure, detach=True)
    except (PayloadError, StoreError) as exc:
        raise CellError(str(exc)) from None
    workers = "" if request.workers else " (start some with %zart_worker start or `zart-nb worker`)"
    say(f"run {run_id!r} handed to the workers{workers}; %zart_attach {run_id} follows it, "
        "and running this cell without --detach once it ended brings its variables here")
    if request.timeout:
        _Deadline(run_id, request)  # cancels the run when its time is up, even detached
    return None


_detached_pools: list = []  # pools started for detached runs live as long as the kernel


class CellError(Exception):
    """An error the notebook front shows as one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mZartError\x1b[0m: {self}"]


class _Deadline:
    """``--timeout``: cancels the run once its time is up (the body stops at its next step)."""

    def __init__(self, run_id: str, request: DurableRequest, body: CellBody | None = None) -> None:
        self.run_id = run_id
        self.body = body
        self.fired = False
        self._timer = threading.Timer(request.timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        from ..engine.runs import Run

        try:
            self.fired = Run(self.run_id).cancel()
        except Exception:  # the run may not exist yet or the database is away
            self.fired = False
        ex = self.body.execution if self.body is not None else None
        if self.fired and ex is not None and ex.stop_reason is None:
            ex.stop_reason = "cancelled"  # stop at the next step, not at the next heartbeat

    def cancel(self) -> None:
        self._timer.cancel()


def _start_pool(size: int | None):
    if not size:
        return None
    try:
        from ..engine.worker import LocalPool
    except ImportError:
        say(f"--workers {size}: the worker pool is not available in this version; ignored")
        return None
    return LocalPool(size).start()


def _show_progress(run_id: str) -> None:
    """The run's live progress (a widget in Jupyter, a text line elsewhere); best effort."""
    try:
        from .progress import show_for_run

        show_for_run(run_id)
    except Exception as exc:  # never fail an attach because of the display
        print(f"(no progress display: {exc})", file=sys.stderr)
