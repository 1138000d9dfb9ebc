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

import os
import re
import time
import types
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..engine.execute import Options, execute
from ..engine.fingerprint import value_fingerprint
from ..engine.journal import current, utcnow
from ..errors import CodeChanged, PayloadError, RunFailed, StoreError, UsageError
from .cells import CellCode, compile_cell, without_library_frames
from .durable_cell import MAX_ATTACH_ROUNDS, CellError, say
from .outputs import Recorder, replay

RECORD_VERSION = 1
_IPYTHON_NAMES = re.compile(r"^(_+\d*|_i+\d*|_[iod]h|_ii*|In|Out|get_ipython|exit|quit)$")


def default_run_name(shell) -> str:
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
    on_change: str = "rerun"


@dataclass
class _Outcome:
    restored: dict | None = None  # the record restored
    changed: str | None = None  # "code" / "inputs" when re-executed because of a change
    problem: str | None = None  # a variable that could not be stored
    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # `with … as NAME` values that won't pickle
    outputs: int = 0
    value: Any = None


class StepCellBody:
    """The body of one step-cell execution: restore the cell, or run and commit it."""

    def __init__(self, shell, cell: CellCode, request: StepRequest) -> None:
        self.shell = shell
        self.cell = cell
        self.request = request
        self.args_fp = inputs_fingerprint(shell, cell.reads)
        self.outcome = _Outcome()
        self.started = False

    def __reduce__(self):  # not resumable from elsewhere: the run's body stays empty
        raise TypeError("a step cell is executed from its notebook only")

    def __call__(self) -> None:
        __tracebackhide__ = True  # noqa: F841
        self.started = True
        ex = current()
        name = self.request.name
        seq = ex.claim_name(name)
        entry = ex.journal.get(name)
        attempt = 1
        if entry is not None:
            attempt = entry.attempts + 1
            if entry.status == "completed":
                changed = entry.change(self.cell.code_fp, self.args_fp, inputs="inputs")
                if changed is None or ex.on_change == "ignore":
                    ex.report.replayed.append(name)
                    self.outcome.restored = ex.value(entry)
                    return
                if ex.on_change == "error":
                    raise CodeChanged(f"step cell {name!r}: its {changed} changed since it ran "
                                      "(--on-change error); use --on-change rerun or ignore")
                self.outcome.changed = changed
                ex.report.changed.append(name)
            else:
                ex.report.retried.append(name)
        else:
            ex.report.executed.append(name)
        started_at, t0 = utcnow(), time.monotonic()
        ex.begin(name, attempt)
        try:
            with Recorder(self.shell) as recorder:
                value = self.cell.run(self.shell.user_ns)
        finally:
            ex.inflight = None
        record = self._record(value, recorder, started_at, time.monotonic() - t0)
        if record is None:
            return
        ex.complete(name, "cell", seq, record, code_fp=self.cell.code_fp, args_fp=self.args_fp,
                    attempt=attempt, max_attempts=1, started_at=started_at)

    def _record(self, value, recorder: Recorder, started_at, seconds: float) -> dict | None:
        ns = self.shell.user_ns
        names = [n for n in self.cell.binds
                 if n in ns and n not in self.request.exclude and not _hidden(self.shell, n)]
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


def run_step_cell(shell, source: str, request: StepRequest) -> Any:
    """Execute a ``%%zart_step`` cell: restore it from the notebook run, or run it."""
    __tracebackhide__ = True  # noqa: F841
    cell = compile_cell(source, shell)
    attached: list[dict] = []

    def on_attach(row: dict) -> None:
        if not attached:
            say(f"run {request.run_id!r} is busy in {row.get('owner')}; waiting for it")
        attached.append(row)

    body = None
    try:
        for _ in range(MAX_ATTACH_ROUNDS):
            body = StepCellBody(shell, cell, request)
            try:
                outcome = execute(body, name=request.run_id, run_id=request.run_id,
                                  options=Options(on_change=request.on_change),
                                  replay_completed=True, on_attach=on_attach)
            except RunFailed:
                if attached and not body.started:
                    continue  # the other kernel's cell failed; ours goes on
                raise
            if not outcome.attached:
                break
        else:
            raise UsageError(f"run {request.run_id!r} kept being executed by other processes")
    except KeyboardInterrupt:
        if body is not None and body.started:
            say(f"step cell {request.name!r} interrupted; it is not checkpointed")
        raise
    except UsageError:
        raise
    except (RunFailed, StoreError) as exc:
        raise CellError(str(exc)) from None
    except Exception as exc:  # the cell's own error: its traceback, ours cut out
        raise without_library_frames(exc)
    result = body.outcome
    if result.restored is not None:
        return restore(shell, request.name, result.restored)
    if result.problem is not None:
        raise CellError(result.problem)
    why = f" (re-executed: its {result.changed} changed)" if result.changed else ""
    stored = ", ".join(result.stored) or "none"
    skipped = f" (not stored: {', '.join(result.skipped)})" if result.skipped else ""
    say(f"step cell {request.name!r} checkpointed in run {request.run_id!r}{why}; "
        f"{len(result.stored)} variable{'s' if len(result.stored) != 1 else ''}: {stored}{skipped}")
    return result.value


def restore(shell, name: str, record: dict) -> Any:
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


def decode_variables(shell, record: dict, wanted: list[str] | None, what: str) -> dict[str, Any]:
    stored = record.get("vars") or {}
    names = list(stored) if wanted is None else [n for n in wanted if n in stored]
    out = {}
    for var in names:
        value = codec.decode(stored[var], what=f"variable {var!r} of {what}")
        out[var] = rebind(value, shell.user_ns)
    return out


class StoredDisplay:
    """The shown form of a value that could not be stored: displays as it did."""

    def __init__(self, data: dict, metadata: dict | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "<stored display>"))


# -- fingerprints of the values a cell reads ----------------------------------------

def inputs_fingerprint(shell, reads: list[str]) -> bytes:
    """Fingerprint of the values of ``reads`` present in the namespace (absent ones count
    too); functions and classes by their code, a value without a canonical form by its type."""
    ns = shell.user_ns
    return value_fingerprint(tuple((name, ns[name]) if name in ns else (name,)
                                   for name in sorted(reads) if not _hidden(shell, name)))


def _hidden(shell, name: str) -> bool:
    return name in getattr(shell, "user_ns_hidden", {}) or bool(_IPYTHON_NAMES.match(name))


# -- functions and classes unpickled into the notebook's namespace ------------------

def rebind(value: Any, namespace: dict) -> Any:
    """Notebook functions (and classes' methods) unpickled by cloudpickle get a private
    globals dict; give them the notebook's namespace again so they see its variables."""
    from ..engine.steps import StepFunction

    if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
        return _rebind_function(value, namespace)
    if isinstance(value, StepFunction) and getattr(value.fn, "__module__", None) == "__main__":
        value.fn = _rebind_function(value.fn, namespace)
        value.__wrapped__ = value.fn
        return value
    if isinstance(value, type) and value.__module__ == "__main__":
        for attr, member in list(vars(value).items()):
            if isinstance(member, types.FunctionType):
                setattr(value, attr, _rebind_function(member, namespace))
    return value


def _rebind_function(fn: types.FunctionType, namespace: dict) -> types.FunctionType:
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    new.__qualname__ = fn.__qualname__
    new.__doc__ = fn.__doc__
    new.__annotations__ = fn.__annotations__
    new.__module__ = fn.__module__
    return new


def load_run_variables(shell, run_id: str, wanted: list[str]) -> dict[str, Any]:
    """The variables stored by the step cells of run ``run_id`` (later cells win)."""
    from ..engine.runs import Run

    run = Run(run_id)
    cells = sorted((s for s in run.steps if s["kind"] == "cell" and s["status"] == "completed"),
                   key=lambda s: (s["finished_at"] is None, s["finished_at"]))
    if not cells:
        raise UsageError(f"run {run_id!r} has no step cells with stored variables "
                         "(%zart_load reads what %%zart_step cells stored)")
    found: dict[str, tuple[str, dict]] = {}
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
