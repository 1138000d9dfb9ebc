"""Step cells: a cell that is one checkpoint of the notebook's run (``%%zart_step NAME``,
or any plain cell when automatic cells are on, named by its Jupyter cell id).

Each execution of a step cell is one execution of the notebook run (through
``engine.execute.replay``) whose body handles just that cell, as a journal entry of
kind ``cell``, through ``Execution.lookup``:

- its code fingerprint is a hash of the cell's text; its input fingerprint hashes the
  values of the names it reads (``cell_state``), so that a changed upstream cell makes
  the cells that read what it wrote run again, and a cell run twice in a row after
  changing what it reads (``xs.append(1)``) runs again;
- a matching entry is *restored*: the variables the cell wrote (bound, deleted, or
  changed in place) come back and its outputs are published again;
- otherwise the cell runs, its outputs shown live and recorded, and the entry is
  committed (``checkpoints``). A cell that cannot be checkpointed (it wrote a value
  that does not pickle, it reads one whose changes cannot be seen, it wrote nothing
  and showed nothing, it only imports) is committed as such: it runs on every restore.

Cells of a run can be executed in any order, one at a time, in any kernel. A cell
interrupted or failing is not checkpointed.
"""

from __future__ import annotations

import asyncio
import os
import time
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..engine.effects import Call, Io, Steps, perform
from ..engine.execute import RunRequest
from ..engine.execution import Decision, Execution, current, one_line, utcnow
from ..engine.model import OnChange, Options
from ..engine.runs import Run
from ..engine.steps import StepFunction, stored
from ..errors import PayloadError, RunFailed, StoreError, UsageError
from ..frames import without_library_frames
from ..store.records import RunRow
from .awaiting import check_awaited, interruptible
from .cell_state import Changes, Inputs, Snapshot, Visible, changed_inputs, observe, read_inputs, relink
from .cells import CellCode, compile_cell
from .checkpoints import RECORD_VERSION, Chosen, choose, decode_values, only_imports, sort_out, stored_names
from .front import CellError, is_hidden, replay_here, replay_here_async, say, unchained
from .outputs import Recorder, replay

LISTED = 8  # variables named in a summary line


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
    label: str = ""  # how the summary line names the cell (default: step cell 'NAME')
    never_store: list[str] = field(default_factory=list)  # type paths never stored

    def __post_init__(self) -> None:
        self.label = self.label or f"step cell {self.name!r}"


@dataclass
class _Outcome:
    restored: dict[str, Any] | None = None  # the record restored
    values: dict[str, Any] = field(default_factory=dict)  # its variables, unpickled
    why: str | None = None  # why it ran: its code changed, an input changed (x), …
    runs_on_restore: str | None = None  # why it cannot be checkpointed
    changes: Changes | None = None
    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # `with … as NAME` values that won't pickle
    value: Any = None


def visible_names(shell: Any) -> Visible:
    """The names a step cell stores, fingerprints and restores: not IPython's own."""
    def visible(name: str) -> bool:
        return not is_hidden(shell, name) and not (name.startswith("__") and name.endswith("__"))
    return visible


class StepCellBody:
    """The body of one step-cell execution: restore the cell, or run and commit it."""

    def __init__(self, shell: Any, cell: CellCode, request: StepRequest, inputs: Inputs) -> None:
        self.shell = shell
        self.cell = cell
        self.request = request
        self.inputs = inputs
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
        decision = ex.lookup(self.request.name, self.cell.code_fp, self.inputs.key(),
                             what="step cell", inputs="inputs")
        return perform(ex, self._restored_or_run(ex, decision), self.request.label)

    def _restored_or_run(self, ex: Execution, decision: Decision) -> Steps[None]:
        __tracebackhide__ = True
        name, out = self.request.name, self.outcome
        if decision.action == "replay" and self._opaque_reason() is None:
            assert decision.entry is not None
            try:
                record = yield from stored(ex, decision.entry)
                out.values = decode_values(record, None, f"step cell {name!r}")
            except Exception as exc:  # a class or module gone, a payload refused
                out.why = f"its checkpoint could not be loaded ({one_line(exc)})"
            else:
                if record.get("runs_on_restore") is None:
                    out.restored = record
                    return
        elif decision.changed == "code":
            out.why = "its code changed"
        elif decision.changed is not None:
            assert decision.entry is not None
            changed = changed_inputs(decision.entry.args_fp, self.inputs)
            out.why = f"an input changed ({', '.join(changed)})" if changed else "its inputs changed"
        yield from self._run(ex, decision)

    def _opaque_reason(self) -> str | None:
        for name, why in sorted(self.inputs.opaque.items()):
            return f"it reads {name}, whose changes cannot be seen ({why.removeprefix(name + ': ')})"
        return None

    def _run(self, ex: Execution, decision: Decision) -> Steps[None]:
        __tracebackhide__ = True
        ns, visible = self.shell.user_ns, visible_names(self.shell)
        before = Snapshot(ns, visible)
        started_at, t0 = utcnow(), time.monotonic()
        name = self.request.name
        ex.begin(name, decision.attempt)
        run = self.cell.arun if self.cell.is_async else self.cell.run
        try:
            with Recorder(self.shell) as recorder:
                value = yield Call(run, (ns,))
        finally:
            ex.ended(name)
        seconds = time.monotonic() - t0
        self.outcome.changes = observe(ns, visible, before, self.inputs, self.cell.binds)
        self.outcome.value = value
        base = {"version": RECORD_VERSION, "ran_at": started_at, "seconds": seconds}

        def commit(record: dict[str, Any]) -> Io:
            return Io(ex.complete, name, "cell", decision.seq, record, code_fp=self.cell.code_fp,
                      args_fp=self.inputs.key(), attempt=decision.attempt, max_attempts=1,
                      started_at=started_at)

        chosen = choose(ns, self.outcome.changes, exclude=self.request.exclude,
                        never_store=self.request.never_store)
        reason = self._opaque_reason() or chosen.not_checkpointable or self._nothing_to_restore(
            chosen, bool(recorder.records) or value is not None)
        if reason is None:
            record = {**base, **self._stored(chosen, value, recorder)}
            try:
                yield commit(record)  # one pickle of the whole cell, signed once
                return
            except PayloadError:  # something does not pickle: find it
                chosen = sort_out(ns, chosen, self.cell.resources)
                reason = chosen.not_checkpointable
        if reason is None:
            yield commit({**base, **self._stored(chosen, value, recorder, bundle=True)})
            return
        self.outcome.runs_on_restore = reason
        yield commit({**base, "runs_on_restore": reason})

    def _nothing_to_restore(self, chosen: Chosen, shows: bool) -> str | None:
        """A cell that wrote nothing and showed nothing, or only imported, runs on restore."""
        changes = self.outcome.changes
        if shows or (changes is not None and changes.deleted):
            return None
        if not chosen.groups:
            return "it changes no variable and shows nothing (it ran for its effects elsewhere)"
        if only_imports(self.shell.user_ns[n] for n in chosen.names):
            return "it only imports (running it brings back what else it set)"
        return None

    def _stored(self, chosen: Chosen, value: Any, recorder: Recorder, *,
                bundle: bool = False) -> dict[str, Any]:
        """The checkpoint's content; ``bundle``: the value as its display (it did not pickle)."""
        out, changes = self.outcome, self.outcome.changes
        assert changes is not None
        out.stored, out.skipped = chosen.names, chosen.skipped
        shown = None
        if bundle and value is not None:
            try:
                codec.encode(value, what="result")
            except PayloadError:
                shown, value = self.shell.display_formatter.format(value), None
        return {"groups": chosen.values(self.shell.user_ns), "deleted": changes.deleted,
                "mutated": changes.mutated, "rebound": changes.rebound,
                "outputs": recorder.records, "value": value,
                "bundle": shown, "reads": sorted(self.inputs.fingerprints)}


def run_step_cell(shell: Any, source: str, request: StepRequest, *,
                  cell: CellCode | None = None) -> Any:
    """Execute a step cell: restore it from the notebook run, or run it; a cell that
    awaits returns a coroutine, for IPython to await. ``cell``: the cell already
    compiled (an automatic cell's)."""
    __tracebackhide__ = True
    running = _StepCell(shell, cell or compile_cell(source, shell), request)
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
    """One execution of a step cell: what the sync and the awaiting ways share."""

    def __init__(self, shell: Any, cell: CellCode, request: StepRequest) -> None:
        self.shell = shell
        self.cell = cell
        self.request = request
        self.inputs = read_inputs(shell.user_ns, cell.reads, visible_names(shell))
        self.attached: list[RunRow] = []
        self.bodies: list[StepCellBody] = []

    def on_attach(self, row: RunRow) -> None:
        if not self.attached:
            say(f"run {self.request.run_id!r} is busy in {row.owner}; waiting for it")
        self.attached.append(row)

    def make_request(self) -> RunRequest:
        self.bodies.append(StepCellBody(self.shell, self.cell, self.request, self.inputs))
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
                say(f"{self.request.label} interrupted; it is not checkpointed")
            return exc
        if isinstance(exc, (RunFailed, StoreError)):
            return unchained(CellError(str(exc)))
        if isinstance(exc, Exception) and not isinstance(exc, UsageError):
            return without_library_frames(exc)  # the cell's own error
        return exc

    def shown(self) -> Any:
        result = self.bodies[-1].outcome
        if result.restored is not None:
            return restore(self.shell, self.request.label, result.restored, result.values)
        say(ran_line(self.request, result))
        return result.value


def ran_line(request: StepRequest, result: _Outcome) -> str:
    """The summary line of a step cell that ran."""
    if result.runs_on_restore is not None:
        return f"{request.label} ran because {result.runs_on_restore}; it runs again on every restore"
    why = f" because {result.why}" if result.why else ""
    mutated = result.changes.mutated if result.changes is not None else []
    changed = f" ({', '.join(mutated)} changed in place)" if mutated else ""
    skipped = f" (not stored: {', '.join(result.skipped)})" if result.skipped else ""
    return (f"{request.label} ran{why} and was checkpointed in run {request.run_id!r}; "
            f"{listing(result.stored)}{changed}{skipped}")


def listing(names: list[str]) -> str:
    """``2 variables: a, b`` (the first few)."""
    shown = ", ".join(names[:LISTED]) + (f", … ({len(names) - LISTED} more)" if len(names) > LISTED else "")
    return f"{len(names)} variable{'s' if len(names) != 1 else ''}: {shown or 'none'}"


def restore(shell: Any, label: str, record: dict[str, Any], values: dict[str, Any]) -> Any:
    """Bring a stored cell back: its variables into the namespace (where the old objects
    were held, the restored ones are put), its outputs shown again, its value."""
    ns = shell.user_ns
    value = record.get("value")
    if isinstance(value, bytes) and record.get("version", 1) == 1:  # a signed pickle of its own
        value = codec.decode(value, what=f"value of {label}")
    if record.get("bundle") is not None:
        value = StoredDisplay(*record["bundle"])
    rebound = set(record.get("rebound", values))  # version 1: no relinking
    replaced = {name: ns[name] for name in values if name in ns and name not in rebound}
    ns.update({name: rebind(v, ns) for name, v in values.items()})
    rebind_classes(ns, [value, *values.values(), *ns.values()])  # after every unpickling
    relink(ns, replaced)
    for name in record.get("deleted") or ():
        ns.pop(name, None)
    ran = record.get("ran_at")
    when = f"ran {ran:%Y-%m-%d %H:%M:%S} UTC, {record.get('seconds', 0):.1f} s" if ran else "ran before"
    say(f"{label} restored ({when}); {listing(stored_names(record))}")
    replay(shell, record.get("outputs") or [])
    return value


class StoredDisplay:
    """The shown form of a value that could not be stored: displays as it did."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "<stored display>"))


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
            if isinstance(member, types.FunctionType) and member.__globals__ is not namespace:
                setattr(value, attr, _rebind_function(member, namespace))
    return value


def rebind_classes(namespace: dict[str, Any], values: Iterable[Any]) -> None:
    """Unpickling an instance of a notebook class sets the class's methods again, with
    cloudpickle's private globals: give them the notebook's namespace again."""
    for value in values:
        cls = value if isinstance(value, type) else type(value)
        if cls.__module__ == "__main__":
            rebind(cls, namespace)


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
        for var in stored_names(record):
            found[var] = (step["name"], record)
    missing = [v for v in wanted if v not in found]
    if missing:
        raise UsageError(f"run {run_id!r} stored no variable {', '.join(map(repr, missing))} "
                         f"(it has: {', '.join(sorted(found)) or 'none'})")
    out: dict[str, Any] = {}
    for var in wanted or list(found):
        cell_name, record = found[var]
        value = decode_values(record, [var], f"step cell {cell_name!r}")[var]
        out[var] = rebind(value, shell.user_ns)
    rebind_classes(shell.user_ns, out.values())
    return out
