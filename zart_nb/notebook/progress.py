"""The live progress of a run: a widget in Jupyter, one rewritten text line elsewhere.

``RunProgress(run_id)`` is an anywidget: a few synced traits (status, elapsed time,
counts, one character per child, the first failures, the inspected child, the rate and
the time left) drawn by
``widgets/progress.js`` as a header, a bar, a legend with counts and one canvas cell per
child. A ``Follower`` thread (``progress_state``) feeds it from the database, woken by
LISTEN/NOTIFY and throttled to ten updates a second; it stops when the run ends, and the
final state stays in the widget, so it is saved with the notebook. The front-end asks
for a child's error and traceback, retries a failed child or cancels the run through
custom messages (``model.send``).

``show_for_run(run_id)`` picks the display: the widget inside a Jupyter kernel, a text
line in a terminal or a script. The widget's ``text/plain`` is that line too, refreshed
through its display handle while no front-end view has reported itself (nbclient, a
text-only client), so a run executed headless still ends with its final line.

``register(ipython)`` sets the engine's ``show_progress`` hook (a body waiting for its
children shows its progress); ``unregister()`` clears it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from datetime import datetime
from importlib import resources
from typing import Any, TextIO

import anywidget
import traitlets as t
from IPython import get_ipython
from IPython.display import display

from ..engine import hooks
from ..engine.execution import current
from ..engine.runs import Run
from ..errors import RunNotFound, UsageError, ZartError
from ..store.connection import Store, get_store
from . import progress_state
from .progress_state import Follower, Pace, Snapshot, text_line

__all__ = [
    "RunProgress",
    "TextProgress",
    "register",
    "show_for_run",
    "unregister",
]

def _asset(name: str) -> str:
    return (resources.files("zart_nb") / "widgets" / name).read_text(encoding="utf-8")


class RunProgress(anywidget.AnyWidget):
    """The live progress of run ``run_id``, read from the database.

    ``replayed_before``: children completed before this time count as *replayed*, a
    datetime or ``"now"`` (the database's clock); by default none do. ``start``: elapsed
    time is counted from it (default: the run's start). ``follow=False`` shows one
    snapshot only.
    """

    # Strings, not Paths: anywidget would watch a Path with a closure over the widget.
    _esm = _asset("progress.js")
    _css = _asset("progress.css")

    run_id = t.Unicode("").tag(sync=True)
    run_name = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    elapsed = t.Float(0.0).tag(sync=True)
    live = t.Bool(True).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    finished = t.Int(0).tag(sync=True)
    counts = t.Dict().tag(sync=True)
    states = t.Unicode("").tag(sync=True)
    failed: t.List[Any] = t.List().tag(sync=True)
    detail = t.Dict().tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    rate = t.Float(0.0).tag(sync=True)  # children finished per second, lately
    eta = t.Float(-1.0).tag(sync=True)  # seconds left at that rate; -1: unknown

    def __init__(self, run_id: str, *, replayed_before: datetime | str | None = None,
                 start: datetime | None = None, store: Store | None = None,
                 follow: bool = True, **kwargs: Any) -> None:
        super().__init__(run_id=run_id, **kwargs)
        self._store = store or get_store()
        self._since = _moment(self._store, replayed_before)
        self._start = start
        self._lock = threading.RLock()
        self._views = 0  # front-end views that reported themselves
        self._display: Any = None  # the DisplayHandle of show_for_run, for text/plain refreshes
        self._text_sent = ""
        self._closed = False
        self._follower: Follower | None = None
        self._pace = Pace()
        self.on_msg(_on_front_message)
        snap = self.follow_read()
        if snap is None:
            super().close()
            raise RunNotFound(f"run {run_id!r} does not exist")
        self.follow_apply(snap, final=not snap.live)
        if follow and snap.live:
            self.follow()

    # -- following the database ------------------------------------------------
    def follow(self) -> None:
        """(Re)start the thread that follows the run, unless it runs already."""
        with self._lock:
            if self._closed or (self._follower is not None and self._follower.running):
                return
            self._follower = Follower(self, self._store, self.run_id).start()

    @property
    def following(self) -> bool:
        return self._follower is not None and self._follower.running

    def refresh(self) -> Snapshot | None:
        """Read the run now and show it (from any thread); returns the snapshot."""
        snap = self.follow_read()
        if snap is not None:
            self.follow_apply(snap, final=not snap.live)
        return snap

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._follower is not None:
                self._follower.stop()
        super().close()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def follow_alive(self) -> bool:
        return not self._closed and self.comm is not None

    def follow_read(self) -> Snapshot | None:
        return progress_state.read(self._store, self.run_id, since=self._since, start=self._start)

    def follow_apply(self, snap: Snapshot, final: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._last = snap
            pace = self._pace.observe(snap)
            with self.hold_sync():
                self.rate = round(pace.rate, 2)
                self.eta = -1.0 if pace.left is None else round(pace.left, 1)
                self.run_name = snap.name
                self.status = snap.status
                self.error = snap.error or ""
                self.elapsed = round(snap.elapsed, 1)
                self.live = not final
                self.total = snap.total
                self.finished = snap.finished
                self.counts = snap.counts
                self.states = snap.states
                self.failed = snap.failed
            self._refresh_text(final)

    def _refresh_text(self, final: bool) -> None:
        """Give the display's text/plain the final line, for clients that render no widget
        (nbclient, text viewers of the saved notebook). Only at the end: a rendering client
        would redraw the view on every display update, and while a cell blocks in
        ``wait()`` the kernel cannot hear the view say that it rendered."""
        handle = self._display
        line = self.text()
        if handle is None or not final or self._views or line == self._text_sent:
            return
        self._text_sent = line
        with contextlib.suppress(Exception):  # a display problem never stops the follower
            handle.update(self)

    def text(self) -> str:
        snap = getattr(self, "_last", None)
        return text_line(snap, pace=self._pace) if snap is not None else f"run {self.run_id}"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/plain"] = self.text()
        return bundle

    # -- what the front-end asks ------------------------------------------------
    def _handle_front(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        with self._lock:  # the follower thread sets traits too
            self._handle_locked(kind, content)

    def _handle_locked(self, kind: Any, content: dict[str, Any]) -> None:
        try:
            if kind == "view":
                self._views += 1
            elif kind == "inspect":
                self._inspect(int(content.get("index", -1)))
            elif kind == "retry":
                self._retry(str(content.get("name", "")))
            elif kind == "cancel":
                self._cancel()
        except ZartError as exc:
            self.message = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # never let a click raise into the kernel
            self.message = f"error: {exc}"

    def _inspect(self, index: int) -> None:
        row = progress_state.child_at(self._store, self.run_id, index) if index >= 0 else None
        if row is None:
            self.detail = {}
            return
        self.detail = {"index": index, **{k: _jsonable(v) for k, v in row.as_dict().items()}}

    def _retry(self, name: str) -> None:
        Run(self.run_id, self._store).retry_step(name)
        self.message = f"child {name!r} is queued again"
        if self.detail.get("name") == name:
            self.detail = {}
        self.follow()
        self.refresh()

    def _cancel(self) -> None:
        done = Run(self.run_id, self._store).cancel()
        self.message = "run cancelled" if done else "the run had already ended"
        self.refresh()


def _on_front_message(widget: RunProgress, content: Any, buffers: Any) -> None:
    if isinstance(content, dict):
        widget._handle_front(content)


def _moment(store: Store, value: datetime | str | None) -> datetime | None:
    if value == "now":
        return progress_state.db_now(store)
    if value is not None and not isinstance(value, datetime):
        raise UsageError(f"replayed_before must be a datetime or 'now', not {value!r}")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class TextProgress:
    """The same picture as one text line: rewritten with ``\\r`` on a terminal; elsewhere
    a new line at most every ``every`` seconds, and the final one."""

    def __init__(self, run_id: str, *, stream: TextIO | None = None,
                 replayed_before: datetime | str | None = None, start: datetime | None = None,
                 store: Store | None = None, every: float = 10.0, follow: bool = True) -> None:
        self.run_id = run_id
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self._store = store or get_store()
        self._since = _moment(self._store, replayed_before)
        self._start = start
        self._printed_at = 0.0
        self._pace = Pace()
        self._stopped = False
        self._lock = threading.Lock()
        self.lines = 0  # lines written (a rewrite on a terminal counts as none)
        snap = self.follow_read()
        if snap is None:
            raise RunNotFound(f"run {run_id!r} does not exist")
        self.follow_apply(snap, final=not snap.live)
        self._follower = Follower(self, self._store, run_id, rate=4.0 if self.tty else 10.0,
                                  keep=True)
        if follow and snap.live:
            self._follower.start()

    def stop(self) -> None:
        self._stopped = True
        self._follower.stop()
        self._follower.release()

    def join(self, timeout: float | None = None) -> None:
        if self._follower.thread.is_alive():
            self._follower.thread.join(timeout)

    @property
    def is_closed(self) -> bool:
        return self._stopped

    def follow_alive(self) -> bool:
        return not self._stopped

    def follow_read(self) -> Snapshot | None:
        return progress_state.read(self._store, self.run_id, since=self._since, start=self._start)

    def follow_apply(self, snap: Snapshot, final: bool) -> None:
        line = text_line(snap, pace=self._pace.observe(snap))
        with self._lock:
            now = time.monotonic()
            if self.tty:  # back to the line's start, the line, erase what the last one left
                self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
                self.lines += 1 if final else 0
            elif final or now - self._printed_at >= self.every:
                self.stream.write(line + "\n")
                self.lines += 1
                self._printed_at = now
            self.stream.flush()


# -- choosing the display -------------------------------------------------------
# (run, cell, mode) -> the display shown there
_shown: weakref.WeakValueDictionary[tuple[str, Any, str], RunProgress | TextProgress] = \
    weakref.WeakValueDictionary()


def widget_frontend(shell: Any = None) -> bool:
    """True inside a Jupyter kernel (ipykernel), where widgets can be displayed.

    Every Jupyter client of a kernel (Lab, Notebook, VS Code, nbclient) records widget
    outputs; nbclient renders none but saves their final state. A client that renders no
    widget still gets the text line as the output's ``text/plain``.
    """
    if shell is None:
        shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None




def show_for_run(run_id: str, *, mode: str | None = None,
                 replayed_before: datetime | str | None = None, start: datetime | None = None,
                 store: Store | None = None) -> RunProgress | TextProgress:
    """Show the live progress of ``run_id``: the widget in Jupyter, a text line elsewhere.

    ``mode``: ``"widget"`` or ``"text"`` instead of choosing by the front-end.
    ``replayed_before``: see ``RunProgress`` (``"now"`` after a call that returned a
    completed run's stored result). Shown once per cell and run: a second call in the
    same cell returns the first display.
    """
    if mode not in (None, "widget", "text"):
        raise UsageError(f"progress mode must be 'widget' or 'text', not {mode!r}")
    shell = get_ipython()
    if mode is None:
        mode = "widget" if widget_frontend(shell) else "text"
    key = (run_id, getattr(shell, "execution_count", None), mode)
    found = _shown.get(key) if shell is not None else None
    if found is not None and not found.is_closed:
        return found
    shown: RunProgress | TextProgress
    if mode == "widget":
        shown = RunProgress(run_id, replayed_before=replayed_before, start=start, store=store)
        if shell is not None:
            shown._display = display(shown, display_id=True)
    else:
        shown = TextProgress(run_id, replayed_before=replayed_before, start=start, store=store)
    _shown[key] = shown
    return shown


def _hook(run_id: str, mode: str | None = None) -> None:
    """The engine's ``show_progress``: a body starts waiting for its children."""
    store = since = start = None
    ex = current()
    if ex is not None and ex.run_id == run_id:
        store = ex.store
        start = progress_state.db_now(store)
        # children this execution replayed completed before it; the rest are its own
        since = progress_state.replayed_until(store, run_id, list(ex.report.replayed))
    show_for_run(run_id, mode=mode, replayed_before=since, start=start, store=store)


def _post_run_cell(result: Any = None) -> None:
    """After a cell: the widgets it showed get their last state on the cell's own parent
    message, which nbclient (it keeps only a cell's messages) saves with the notebook."""
    # the counter as the cell saw it (IPython advances it as a cell starts, so it is not
    # the result's execution_count)
    cell = getattr(_registered.get("shell"), "execution_count", None)
    for (_, shown_in, _), shown in list(_shown.items()):
        if shown_in == cell and isinstance(shown, RunProgress) and not shown.is_closed:
            with contextlib.suppress(Exception):
                shown.refresh()


_registered: dict[str, Any] = {}


def register(ipython: Any = None) -> None:
    """Set the engine's ``show_progress`` hook (idempotent); the extension calls it on load."""
    hooks.show_progress = _hook
    if ipython is not None and _registered.get("shell") is not ipython:
        unregister()
        hooks.show_progress = _hook
        ipython.events.register("post_run_cell", _post_run_cell)
        _registered["shell"] = ipython


def unregister() -> None:
    """Clear the hook and the cell callback set by ``register``."""
    if hooks.show_progress is _hook:
        hooks.show_progress = None
    shell = _registered.pop("shell", None)
    if shell is not None:
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", _post_run_cell)
