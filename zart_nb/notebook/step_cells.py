"""``%%zart_step``: a cell that is one checkpoint of the notebook's run.

Each execution of a step cell is one execution of the notebook run (through
``engine.execute.execute`` with ``replay_completed=True``) whose body handles just
that cell, as a journal entry of kind ``cell``:

- its code fingerprint is a hash of the cell's text; its argument fingerprint hashes
  the values of the names the cell reads from the namespace (functions by their code,
  as steps do), so that a changed upstream cell makes its downstream cells run again;
- a matching entry is *restored*: the variables the cell bound come back (each was
  pickled on its own) and its outputs are published again, marked as restored;
- otherwise the cell runs, its outputs shown live and recorded, and the entry is
  committed. A variable that does not pickle is named, with ``--exclude`` as the way out.

Cells of a run can be executed in any order, one at a time, in any kernel.
"""

from __future__ import annotations

import asyncio
import os
import time
import types
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import codec
from ..engine.effects import Call, Commit, Steps, perform
from ..engine.execute import RunRequest
from ..engine.execution import Decision, Execution, current, utcnow
from ..engine.fingerprint import value_fingerprint
from ..engine.model import OnChange, Options
from ..engine.runs import Run
from ..engine.steps import StepFunction, stored
from ..errors import PayloadError, RunFailed, StoreError, UsageError
from ..frames import without_library_frames
from ..store.records import RunRow
from .awaiting import check_awaited, interruptible
from .cells import CellCode, compile_cell
from .front import CellError, is_hidden, one_line, replay_here, replay_here_async, say
from .outputs import Recorder, replay

RECORD_VERSION = 1


def default_run_name(shell: Any) -> str:
    """The notebook's file name when the kernel knows it, else ``notebook``."""
    session = shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
    if isinstance(session, str) and session.strip():
        return os.path.basename(session.rstrip("/")) or "notebook"
    return "notebook"


@dataclass
class StepRequest:
    name: str
    run_id: str
    exclude: list[str] = field(default_factory=list)
    on_change: OnChange = "rerun"


@dataclass
class _Outcome:
    restored: dict[str, Any] | None = None  # the record restored
    changed: str | None = None  # "code" / "inputs" when re-executed because of a change
    problem: str | None = None  # a variable that could not be stored
    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # `with … as NAME` values that won't pickle
    outputs: int = 0
    value: Any = None


class StepCellBody:
    """The body of one step-cell execution: restore the cell, or run and commit it."""

    def __init__(self, shell: Any, cell: CellCode, request: StepRequest) -> None:
        self.shell = shell
        self.cell = cell
        self.request = request
        self.args_fp = inputs_fingerprint(shell, cell.reads)
        self.outcome = _Outcome()
        self.started = False

    def __reduce__(self) -> Any:  # not resumable from elsewhere: the run's body stays empty
        raise TypeError("a step cell is executed from its notebook only")

    @property
    def is_async(self) -> bool:
        """The cell awaits: the engine awaits what calling this body returns."""
        return self.cell.is_async

    def __call__(self) -> Any:
        __tracebackhide__ = True
        self.started = True
        ex = current()
        assert ex is not None  # called by the engine, as the body of the run
        name = self.request.name
        decision = ex.lookup(name, self.cell.code_fp, self.args_fp, what="step cell",
                             inputs="inputs")
        return perform(ex, self._restored_or_run(ex, decision), f"step cell {name!r}")

    def _restored_or_run(self, ex: Execution, decision: Decision) -> Steps[None]:
        __tracebackhide__ = True
        name = self.request.name
        if decision.action == "replay":
            assert decision.entry is not None
            self.outcome.restored = yield from stored(ex, decision.entry)
            return
        self.outcome.changed = decision.changed
        started_at, t0 = utcnow(), time.monotonic()
        ex.begin(name, decision.attempt)
        run = self.cell.arun if self.cell.is_async else self.cell.run
        try:
            with Recorder(self.shell) as recorder:
                value = yield Call(run, (self.shell.user_ns,))
        finally:
            ex.ended(name)
        record = self._record(value, recorder, started_at, time.monotonic() - t0)
        if record is None:
            return
        yield Commit(ex, ex.completion(name, "cell", decision.seq, record,
                                       code_fp=self.cell.code_fp, args_fp=self.args_fp,
                                       attempt=decision.attempt, max_attempts=1,
                                       started_at=started_at))

    def _record(self, value: Any, recorder: Recorder, started_at: datetime,
                seconds: float) -> dict[str, Any] | None:
        ns = self.shell.user_ns
        names = [n for n in self.cell.binds
                 if n in ns and n not in self.request.exclude and not is_hidden(self.shell, n)]
        variables: dict[str, bytes] = {}
        for var in names:
            try:
                variables[var] = codec.encode(ns[var], what=f"variable {var!r}")
            except PayloadError as exc:
                if var in self.cell.resources:  # `with open(…) as f`: left out, said so
                    self.outcome.skipped.append(var)
                    continue
                self.outcome.problem = (
                    f"step cell {self.request.name!r}: {exc}. The cell ran but is not "
                    f"checkpointed; leave the variable out with --exclude {var}")
                self.outcome.value = value
                return None
        stored_value = bundle = None
        if value is not None:
            try:
                stored_value = codec.encode(value, what="result")
            except PayloadError:
                bundle = self.shell.display_formatter.format(value)
        self.outcome.stored = [n for n in names if n in variables]
        self.outcome.outputs = len(recorder.records)
        self.outcome.value = value
        return {"version": RECORD_VERSION, "vars": variables, "outputs": recorder.records,
                "value": stored_value, "bundle": bundle, "ran_at": started_at,
                "seconds": seconds, "reads": self.cell.reads}


def run_step_cell(shell: Any, source: str, request: StepRequest) -> Any:
    """Execute a ``%%zart_step`` cell: restore it from the notebook run, or run it; a
    cell that awaits returns a coroutine, for IPython to await."""
    __tracebackhide__ = True
    running = _StepCell(shell, compile_cell(source, shell), request)
    if running.cell.is_async:
        check_awaited(shell, "%%zart_step")
        return running.awaited()
    try:
        replay_here(running.make_request, on_attach=running.on_attach,
                    retry_failed=running.other_kernels_failure)
    except BaseException as exc:
        raise running.failure(exc)  # noqa: B904 (the user's own error, or one line of ours)
    return running.shown()


class _StepCell:
    """One execution of a ``%%zart_step`` cell: what the sync and the awaiting ways share."""

    def __init__(self, shell: Any, cell: CellCode, request: StepRequest) -> None:
        self.shell = shell
        self.cell = cell
        self.request = request
        self.attached: list[RunRow] = []
        self.bodies: list[StepCellBody] = []

    def on_attach(self, row: RunRow) -> None:
        if not self.attached:
            say(f"run {self.request.run_id!r} is busy in {row.owner}; waiting for it")
        self.attached.append(row)

    def make_request(self) -> RunRequest:
        self.bodies.append(StepCellBody(self.shell, self.cell, self.request))
        return RunRequest(self.bodies[-1], self.request.run_id, self.request.run_id,
                          options=Options(on_change=self.request.on_change))

    def other_kernels_failure(self) -> bool:  # the other kernel's cell failed; ours goes on
        return bool(self.attached) and not self.bodies[-1].started

    async def awaited(self) -> Any:
        __tracebackhide__ = True
        try:
            async with interruptible():
                await replay_here_async(self.make_request, on_attach=self.on_attach,
                                        retry_failed=self.other_kernels_failure)
        except BaseException as exc:
            raise self.failure(exc)  # noqa: B904 (the user's own error, or one line of ours)
        return self.shown()

    def failure(self, exc: BaseException) -> BaseException:
        """What the cell raises for ``exc``: the user's own error with our frames cut out,
        or one line of ours."""
        if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):  # Ctrl-C
            if self.bodies and self.bodies[-1].started:
                say(f"step cell {self.request.name!r} interrupted; it is not checkpointed")
            return exc
        if isinstance(exc, (RunFailed, StoreError)):
            return one_line(CellError(str(exc)))
        if isinstance(exc, Exception) and not isinstance(exc, UsageError):
            return without_library_frames(exc)  # the cell's own error
        return exc

    def shown(self) -> Any:
        request, result = self.request, self.bodies[-1].outcome
        if result.restored is not None:
            return restore(self.shell, request.name, result.restored)
        if result.problem is not None:
            raise CellError(result.problem)
        why = f" (re-executed: its {result.changed} changed)" if result.changed else ""
        kept = ", ".join(result.stored) or "none"
        skipped = f" (not stored: {', '.join(result.skipped)})" if result.skipped else ""
        say(f"step cell {request.name!r} checkpointed in run {request.run_id!r}{why}; "
            f"{len(result.stored)} variable{'s' if len(result.stored) != 1 else ''}: "
            f"{kept}{skipped}")
        return result.value


def restore(shell: Any, name: str, record: dict[str, Any]) -> Any:
    """Bring a stored cell back: its variables into the namespace, its outputs shown again."""
    variables = decode_variables(shell, record, None, f"step cell {name!r}")
    shell.user_ns.update(variables)
    ran = record.get("ran_at")
    when = f"ran {ran:%Y-%m-%d %H:%M:%S} UTC, {record.get('seconds', 0):.1f} s" if ran else "ran before"
    listed = ", ".join(variables) or "none"
    say(f"step cell {name!r} restored ({when}); {len(variables)} "
        f"variable{'s' if len(variables) != 1 else ''}: {listed}")
    replay(shell, record.get("outputs") or [])
    if record.get("value") is not None:
        return codec.decode(record["value"], what=f"value of step cell {name!r}")
    if record.get("bundle") is not None:
        return StoredDisplay(*record["bundle"])
    return None


def decode_variables(shell: Any, record: dict[str, Any], wanted: list[str] | None,
                     what: str) -> dict[str, Any]:
    stored = record.get("vars") or {}
    names = list(stored) if wanted is None else [n for n in wanted if n in stored]
    out = {}
    for var in names:
        value = codec.decode(stored[var], what=f"variable {var!r} of {what}")
        out[var] = rebind(value, shell.user_ns)
    return out


class StoredDisplay:
    """The shown form of a value that could not be stored: displays as it did."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "<stored display>"))


# -- fingerprints of the values a cell reads ----------------------------------------

def inputs_fingerprint(shell: Any, reads: list[str]) -> bytes:
    """Fingerprint of the values of ``reads`` present in the namespace (absent ones count
    too); functions and classes by their code, a value without a canonical form by its type."""
    ns = shell.user_ns
    return value_fingerprint(tuple((name, ns[name]) if name in ns else (name,)
                                   for name in sorted(reads) if not is_hidden(shell, name)))


# -- functions and classes unpickled into the notebook's namespace ------------------

def rebind(value: Any, namespace: dict[str, Any]) -> Any:
    """Notebook functions (and classes' methods) unpickled by cloudpickle get a private
    globals dict; give them the notebook's namespace again so they see its variables."""
    if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
        return _rebind_function(value, namespace)
    if isinstance(value, StepFunction) and isinstance(value.fn, types.FunctionType) \
            and value.fn.__module__ == "__main__":
        value.fn = _rebind_function(value.fn, namespace)
        vars(value)["__wrapped__"] = value.fn
        return value
    if isinstance(value, type) and value.__module__ == "__main__":
        for attr, member in list(vars(value).items()):
            if isinstance(member, types.FunctionType):
                setattr(value, attr, _rebind_function(member, namespace))
    return value


def _rebind_function(fn: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    new.__qualname__ = fn.__qualname__
    new.__doc__ = fn.__doc__
    new.__annotations__ = fn.__annotations__
    new.__module__ = fn.__module__
    return new


def load_run_variables(shell: Any, run_id: str, wanted: list[str]) -> dict[str, Any]:
    """The variables stored by the step cells of run ``run_id`` (later cells win)."""
    run = Run(run_id)
    cells = sorted((s for s in run.steps if s["kind"] == "cell" and s["status"] == "completed"),
                   key=lambda s: (s["finished_at"] is None, s["finished_at"]))
    if not cells:
        raise UsageError(f"run {run_id!r} has no step cells with stored variables "
                         "(%zart_load reads what %%zart_step cells stored)")
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for step in cells:
        record = run.step_result(step["name"])
        for var in record.get("vars") or {}:
            found[var] = (step["name"], record)
    missing = [v for v in wanted if v not in found]
    if missing:
        raise UsageError(f"run {run_id!r} stored no variable {', '.join(map(repr, missing))} "
                         f"(it has: {', '.join(sorted(found)) or 'none'})")
    out: dict[str, Any] = {}
    for var in wanted or list(found):
        cell_name, record = found[var]
        out.update(decode_variables(shell, record, [var], f"step cell {cell_name!r}"))
    return out
