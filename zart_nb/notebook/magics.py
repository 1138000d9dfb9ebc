"""The magics of zart-nb: thin adapters that parse their arguments and call the engine.

A mistake in a magic's arguments (an unknown option, a missing NAME, an expression
that does not evaluate, a run that does not exist) is shown as IPython's one-line
``UsageError``: the reason, then the magic's usage line. A ``zart_nb.errors.UsageError``
raised while a cell executes (a duplicate step name, a changed step under
``--on-change error``) is shown as one line too, without the usage line.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from IPython.core.error import UsageError as IPyUsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Enum, List, Unicode, observe

from ..config import ExecutorSpec, parse_executor, settings
from ..durations import parse_duration
from ..engine import backends
from ..engine.loops import run_to_completion
from ..engine.model import ON_CHANGE_POLICIES as ON_CHANGE
from ..engine.runs import Run, runs, send_event
from ..engine.worker import LocalPool
from ..errors import PayloadError, RunFailed, RunNotFound, StoreError, UsageError
from ..names import check_name
from .auto_cells import AutoCells
from .cells import compile_cell
from .durable_cell import DurableRequest, run_durable_cell
from .front import CellError, say, show_progress
from .resume import resume_request
from .step_cells import StepRequest, default_run_name, load_run_variables, run_step_cell
from .tables import bundle

Magic = Callable[..., Any]


def usage_of(func: Magic, cell: bool = False) -> str:
    """The one-line usage of a magic, from its argument parser."""
    parser = cast(Any, func).parser  # set by @magic_arguments
    text = parser.format_usage().replace("::", "").strip()
    text = re.sub(r"\s+", " ", text)
    return "usage: " + ("%" if cell else "") + text


@magics_class
class ZartMagics(Magics):
    """``%%zart_durable``, ``%%zart_step`` and the line magics that look at runs."""

    default_on_change = Enum(ON_CHANGE, default_value="rerun",
                             help="--on-change when a magic is not given one").tag(config=True)
    auto_cells = Bool(False, help="every plain cell is a step cell of the notebook run "
                                  "(%zart_auto; on in the durable kernel)").tag(config=True)
    never_store = List(Unicode(), help="types (module.QualName) that step cells never store: "
                                       "a cell writing one runs on every restore").tag(config=True)

    def __init__(self, shell: InteractiveShell, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.ip = shell  # the shell, never None once registered
        self.notebook_run: str | None = None
        self.pool: LocalPool | None = None
        self.auto = AutoCells(shell, self.auto_request)
        if self.auto_cells:
            self.auto.enable()

    @observe("auto_cells")
    def _switch_auto_cells(self, change: Any) -> None:
        auto = vars(self).get("auto")  # None while the config is applied, before __init__ ends
        if auto is not None:
            auto.enable() if change["new"] else auto.disable()

    def auto_request(self, name: str) -> StepRequest:
        """The step-cell request of the automatic cell ``name`` (its cell id)."""
        return StepRequest(name=name, run_id=self.current_run(), on_change=self.default_on_change,
                           label="cell", never_store=list(self.never_store))

    # -- helpers -------------------------------------------------------------
    def _parse(self, func: Magic, line: str, cell: bool = False) -> Any:
        try:
            return parse_argstring(func, line)
        except (IPyUsageError, ValueError) as exc:
            raise IPyUsageError(f"{_magic_name(func, cell)}: {exc}\n{usage_of(func, cell)}") from None

    def _bad(self, func: Magic, reason: str, cell: bool = False) -> IPyUsageError:
        return IPyUsageError(f"{_magic_name(func, cell)}: {reason}\n{usage_of(func, cell)}")

    @contextmanager
    def _front(self, func: Magic, cell: bool = False, *, arguments: bool = False) -> Iterator[None]:
        """zart's UsageError as IPython's one line (with the usage line for argument errors)."""
        try:
            yield
        except UsageError as exc:
            if arguments:
                raise self._bad(func, str(exc), cell) from None
            raise IPyUsageError(str(exc)) from None

    def _callable(self, func: Magic, expr: str, what: str, cell: bool) -> Callable[..., Any]:
        try:
            value = self.ip.ev(expr)
        except Exception as exc:
            raise self._bad(func, f"{what} {expr!r} does not evaluate: "
                                  f"{type(exc).__name__}: {exc}", cell) from None
        if not callable(value):
            raise self._bad(func, f"{what} {expr!r} is a {type(value).__name__}, not a function", cell)
        function: Callable[..., Any] = value
        return function

    def _executor(self, func: Magic, expr: str, what: str, cell: bool) -> Any:
        """The executor ``expr`` names (``loky:4``, ``dask://host:8786``, ``off``: taken as
        written, unless it is a variable of the notebook) or evaluates to; checked now."""
        text = expr.strip()
        if text not in self.ip.user_ns:
            with contextlib.suppress(UsageError):
                parse_executor(text, what=what)
                return text
        try:
            value = self.ip.ev(text)
        except Exception as exc:
            raise self._bad(func, f"{what} {expr!r} does not evaluate: "
                                  f"{type(exc).__name__}: {exc}", cell) from None
        backends.backend_for(value)  # a UsageError names what is wrong with it
        return value

    def current_run(self) -> str:
        return self.notebook_run or default_run_name(self.ip)

    # -- cells ---------------------------------------------------------------
    @magic_arguments()
    @argument("name", metavar="NAME", help="the durable name; also the run id unless --run")
    @argument("--run", metavar="ID", help="run id (default: NAME)")
    @argument("--restart", action="store_true", help="start the run afresh (a new generation)")
    @argument("--workers", metavar="N", type=int, help="a local worker pool of N for the run")
    @argument("--timeout", metavar="D", help="cancel the run after D (90s, 30m, 2h)")
    @argument("--on-change", choices=ON_CHANGE, default=None,
              help="a completed step whose code or arguments changed: rerun (default), error, ignore")
    @argument("--on-failure", metavar="FUNC", help="handler(input, error) whose value becomes the result")
    @argument("--detach", action="store_true", help="hand the body to the worker fleet")
    @argument("--executor", metavar="EXPR",
              help="run its children on this executor (a Dask client, a concurrent.futures "
                   "executor, 'dask://HOST:PORT', 'off'), evaluated here")
    @cell_magic
    def zart_durable(self, line: str, cell: str) -> Any:
        """Execute the cell as a durable body: its steps are checkpointed, and executing it
        again (after a restart, or in another notebook) replays them."""
        __tracebackhide__ = True
        func = self.zart_durable
        args = self._parse(func, line, cell=True)
        if args.workers is not None and args.workers < 1:
            raise self._bad(func, f"--workers must be at least 1, not {args.workers}", cell=True)
        if args.detach and args.executor:
            raise self._bad(func, "--executor cannot go with --detach: a detached body runs on "
                                  "a zart-nb worker, which cannot use this kernel's executor",
                            cell=True)
        with self._front(func, cell=True, arguments=True):
            request = DurableRequest(
                name=args.name, run_id=args.run, restart=args.restart, workers=args.workers,
                timeout=parse_duration(args.timeout, what="--timeout") if args.timeout else None,
                timeout_text=args.timeout, on_change=args.on_change or self.default_on_change,
                on_failure=(self._callable(func, args.on_failure, "--on-failure", True)
                            if args.on_failure else None), detach=args.detach,
                executor=(self._executor(func, args.executor, "--executor", True)
                          if args.executor else None))
            check_name("NAME", args.run if args.run is not None else args.name)
        if not cell.strip():
            raise self._bad(func, "the cell is empty: write the body below the magic line", cell=True)
        with self._front(func, cell=True):
            return run_durable_cell(self.ip, cell, request)

    @magic_arguments()
    @argument("name", metavar="NAME", nargs="?", help="the run of this notebook's step cells")
    @argument("--restart", action="store_true", help="start that run afresh (a new generation)")
    @line_magic
    def zart_run(self, line: str) -> Any:
        """Set the run that the following %%zart_step cells belong to (default: the
        notebook's file name, else "notebook"); without NAME, show it."""
        func = self.zart_run
        args = self._parse(func, line)
        if args.name is None:
            say(f"step cells of this notebook belong to run {self.current_run()!r}")
            return None
        with self._front(func, arguments=True):
            check_name("NAME", args.name)
        self.notebook_run = args.name
        if args.restart:
            with self._front(func):
                try:
                    generation = Run(args.name).restart()
                    say(f"run {args.name!r} restarted (generation {generation})")
                except RunNotFound:
                    pass
        say(f"step cells of this notebook belong to run {args.name!r}")
        return None

    @magic_arguments()
    @argument("name", metavar="NAME", help="the step's name, unique within the notebook run")
    @argument("--run", metavar="ID", help="the run (default: the one set by %%zart_run)")
    @argument("--exclude", metavar="VAR", action="append", default=[],
              help="a variable not to store, e.g. an open connection (repeatable, or a,b)")
    @argument("--on-change", choices=ON_CHANGE, default=None,
              help="code or inputs changed since the cell ran: rerun (default), error, ignore")
    @cell_magic
    def zart_step(self, line: str, cell: str) -> Any:
        """One checkpoint of the notebook run: the first execution runs the cell and stores
        the variables it binds and its outputs; later ones restore them without running,
        unless the cell's code or the variables it reads changed."""
        __tracebackhide__ = True
        func = self.zart_step
        args = self._parse(func, line, cell=True)
        run_id = args.run or self.current_run()
        with self._front(func, cell=True, arguments=True):
            check_name("NAME", args.name)
            check_name("--run", run_id)
        if not cell.strip():
            raise self._bad(func, "the cell is empty: write its code below the magic line", cell=True)
        excluded = [v.strip() for item in args.exclude for v in item.split(",") if v.strip()]
        request = StepRequest(name=args.name, run_id=run_id, exclude=excluded,
                              on_change=args.on_change or self.default_on_change,
                              never_store=list(self.never_store))
        with self._front(func, cell=True):
            return run_step_cell(self.ip, cell, request)

    @magic_arguments()
    @argument("state", nargs="?", choices=("on", "off"), help="on or off (default: show it)")
    @line_magic
    def zart_auto(self, line: str) -> Any:
        """Automatic step cells: every plain cell of this notebook becomes a step cell of
        its run, named by its Jupyter cell id (%%zart_always cells and cells with other
        magics are left as they are)."""
        args = self._parse(self.zart_auto, line)
        if args.state is not None:
            self.auto_cells = args.state == "on"
        state = "on: plain cells are step cells" if self.auto_cells else "off"
        say(f"automatic step cells are {state} (run {self.current_run()!r})")

    @cell_magic
    def zart_always(self, line: str, cell: str) -> Any:
        """The cell always runs: it is never checkpointed nor restored (a cell that opens
        a connection, reads the clock, or must show fresh output)."""
        __tracebackhide__ = True
        if line.strip():
            raise IPyUsageError(f"%%zart_always takes no arguments, not {line.strip()!r}\n"
                                "usage: %%zart_always")
        return compile_cell(cell, self.ip).run(self.ip.user_ns)

    @cell_magic
    def zart_auto_cell(self, line: str, cell: str) -> Any:
        """The code of an automatic step cell (written by the transformer; see %zart_auto)."""
        __tracebackhide__ = True
        try:
            return self.auto.run(cell.strip())
        except UsageError as exc:
            raise IPyUsageError(str(exc)) from None

    # -- runs ----------------------------------------------------------------
    @magic_arguments()
    @argument("--status", help="only runs with this status (running, completed, failed, …)")
    @argument("--name", help="only runs of this durable name")
    @argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    @line_magic
    def zart_runs(self, line: str) -> Any:
        """A table of runs, newest first: status, steps done/total, owner, started, duration."""
        func = self.zart_runs
        args = self._parse(func, line)
        if args.limit < 1:
            raise self._bad(func, f"--limit must be at least 1, not {args.limit}")
        with self._front(func, arguments=True):
            found = runs(status=args.status, name=args.name, limit=args.limit)
        with self._front(func), _one_line_store_errors():
            display(bundle(found), raw=True)

    @magic_arguments()
    @argument("id", metavar="ID", help="the run id")
    @argument("--timeout", metavar="D", help="stop waiting after D (90s, 30m)")
    @line_magic
    def zart_attach(self, line: str) -> Any:
        """Follow a run started anywhere until it ends; returns its result."""
        func = self.zart_attach
        args = self._parse(func, line)
        with self._front(func, arguments=True), _one_line_store_errors():
            timeout = parse_duration(args.timeout, what="--timeout") if args.timeout else None
            run = Run(args.id)
            row = run.row()
        owner = f", owned by {row['owner']}" if row.get("owner") else ""
        say(f"attached to run {args.id!r}: {row['status']}, {row.get('steps_done', 0)}/"
            f"{row.get('steps_total', 0)} steps done{owner}")
        show_progress(args.id)
        try:
            with _one_line_store_errors():
                return run.result(timeout)
        except KeyboardInterrupt:
            say(f"stopped following run {args.id!r}; it goes on")
            raise
        except RunFailed as exc:
            raise CellError(str(exc)) from None
        except TimeoutError as exc:
            raise CellError(str(exc)) from None

    @magic_arguments()
    @argument("id", metavar="ID", help="the run id of an unfinished %%zart_durable run")
    @line_magic
    def zart_resume(self, line: str) -> Any:
        """Execute the stored cell of an unfinished run again (from any notebook)."""
        __tracebackhide__ = True
        func = self.zart_resume
        args = self._parse(func, line)
        with self._front(func, arguments=True), _one_line_store_errors():
            source, request = resume_request(args.id)
        say(f"resuming run {args.id!r} (durable {request.name!r}) from its stored cell")
        with self._front(func):
            value = run_durable_cell(self.ip, source, request)
            if inspect.iscoroutine(value):  # a cell that awaits: a line magic is not awaited,
                value = run_to_completion(value)  # so it runs on a loop of its own
            return value

    @magic_arguments()
    @argument("id", metavar="ID", help="the run whose step cells stored the variables")
    @argument("vars", metavar="VAR", nargs="*", help="variables to load (default: all)")
    @line_magic
    def zart_load(self, line: str) -> Any:
        """Load the variables that another run's %%zart_step cells stored."""
        func = self.zart_load
        args = self._parse(func, line)
        with self._front(func, arguments=True), _one_line_store_errors():
            loaded = load_run_variables(self.ip, args.id, list(args.vars))
        self.ip.user_ns.update(loaded)
        say(f"loaded {len(loaded)} variable{'s' if len(loaded) != 1 else ''} from run "
            f"{args.id!r}: {', '.join(loaded) or 'none'}")

    @magic_arguments()
    @argument("id", metavar="ID", help="the run waiting in wait_for_event")
    @argument("name", metavar="NAME", help="the event's name")
    @argument("expr", metavar="EXPR", nargs="*", help="its payload: a Python expression (default None)")
    @line_magic
    def zart_event(self, line: str) -> Any:
        """Deliver event NAME to run ID; EXPR (the rest of the line) is evaluated here."""
        func = self.zart_event
        parts = line.strip().split(None, 2)
        if len(parts) < 2:
            missing = "ID and NAME" if not parts else "NAME"
            raise self._bad(func, f"missing {missing}")
        run_id, name = parts[0], parts[1]
        payload = None
        if len(parts) == 3:
            try:
                payload = self.ip.ev(parts[2])
            except Exception as exc:
                raise self._bad(func, f"EXPR {parts[2]!r} does not evaluate: "
                                      f"{type(exc).__name__}: {exc}") from None
        with self._front(func, arguments=True), _one_line_store_errors():
            send_event(run_id, name, payload)
        say(f"event {name!r} sent to run {run_id!r}")

    @magic_arguments()
    @argument("expr", metavar="EXPR|off", nargs="?",
              help="the executor (evaluated here); off: zart-nb's workers; none: show it")
    @line_magic
    def zart_executor(self, line: str) -> Any:
        """Where this kernel's durable bodies run their children when they name no
        executor: a Dask client, any concurrent.futures executor, 'dask://HOST:PORT',
        'loky:4'; off runs them on zart-nb's workers (the PostgreSQL queue)."""
        func = self.zart_executor
        expr = line.strip()
        if expr:
            with self._front(func, arguments=True):
                backends.set_default(self._executor(func, expr, "EXPR", False))
        say(f"children of durable bodies run on {_describe(backends.default())}")

    @magic_arguments()
    @argument("action", choices=("start", "stop", "status"), help="what to do with the pool")
    @argument("-n", type=int, default=None, metavar="N", help="pool size for start")
    @line_magic
    def zart_worker(self, line: str) -> Any:
        """The kernel's local worker pool: processes that execute scheduled steps."""
        func = self.zart_worker
        args = self._parse(func, line)
        if args.n is not None and args.n < 1:
            raise self._bad(func, f"-n must be at least 1, not {args.n}")
        with self._front(func), _one_line_store_errors():
            if args.action == "start":
                size = args.n or settings().workers or 1
                if self.pool is not None and self.pool.size != size:
                    self.pool.stop()
                    self.pool = None
                self.pool = (self.pool or LocalPool(size)).start()
                say(f"worker pool started: {size} process{'es' if size != 1 else ''}")
            elif args.action == "stop":
                if self.pool is None:
                    say("no worker pool is running in this kernel")
                else:
                    self.pool.stop()
                    self.pool = None
                    say("worker pool stopped")
            else:
                procs = self.pool.status() if self.pool is not None else []
                if not procs:
                    say("no worker pool is running in this kernel")
                for proc in procs:
                    state = "alive" if proc.get("alive") else f"exited ({proc.get('returncode')})"
                    say(f"worker pid {proc.get('pid')}: {state}")

    def stop(self) -> None:
        self.auto.disable()
        if self.pool is not None:
            try:
                self.pool.stop()
            finally:
                self.pool = None


@contextmanager
def _one_line_store_errors() -> Iterator[None]:
    """A database that is down: one line, not a traceback."""
    try:
        yield
    except (StoreError, PayloadError) as exc:
        raise CellError(str(exc)) from None


def _describe(executor: Any) -> str:
    """An executor as ``%zart_executor`` names it."""
    if executor is None or str(executor) == "off":
        return "zart-nb's workers (the PostgreSQL queue)"
    if isinstance(executor, ExecutorSpec):
        return f"{executor} (ZART_EXECUTOR)"
    return executor if isinstance(executor, str) else repr(executor)


def _magic_name(func: Magic, cell: bool) -> str:
    name = getattr(func, "__name__", "zart")
    return ("%%" if cell else "%") + name
