"""What a progress display shows of a run, read in one query, and the thread that follows it.

A ``Snapshot`` is the whole picture: the run's status and elapsed time, and one
character per child in schedule order (``STATES``), from which the counts come. The
``Follower`` thread wakes on the run's LISTEN/NOTIFY channel (a slow poll covers a lost
notification), reads a snapshot and hands it to its display, at most ``rate`` times a
second however fast children finish. It always reads once more after the last
notification, so the last state is always delivered, and it stops when the run ended
or when its display goes away (it holds the display through a weak reference). A
``Pace`` turns the snapshots a display received into a rate and a time left.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..engine.model import TERMINAL_STATUSES as TERMINAL
from ..store import progress
from ..store.connection import Store
from ..store.notify import listener
from ..store.records import ChildDetail
from .tables import duration

# One character per child; the order is the order of the counts and of the legend.
STATES = {"c": "completed", "p": "replayed", "r": "running", "y": "retrying",
          "s": "scheduled", "f": "failed"}
FAILED_LIMIT = 50  # failed children listed with their errors (the grid shows them all)
POLL_SECONDS = 2.0  # fallback when a notification is lost
IDLE_STOP_SECONDS = 60.0  # an ended run whose children stopped moving is not followed longer


@dataclass(frozen=True)
class Snapshot:
    run_id: str
    name: str
    status: str
    states: str
    failed: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    error: str | None = None

    @property
    def total(self) -> int:
        return len(self.states)

    @property
    def counts(self) -> dict[str, int]:
        return {label: self.states.count(ch) for ch, label in STATES.items()}

    @property
    def finished(self) -> int:
        c = self.counts
        return c["completed"] + c["replayed"] + c["failed"]

    @property
    def live(self) -> bool:
        """The run may still change: not ended, or ended with children still moving."""
        if self.status not in TERMINAL:
            return True
        if self.status == "cancelled":  # unclaimed children are never run
            return "r" in self.states
        return any(ch in self.states for ch in "rsy")


class Pace:
    """How fast a run's children finish, measured on the snapshots a display receives
    over time (no query of its own, the same for every backend): ``rate`` is children
    finished per second over the last ``window`` seconds, ``left`` the seconds the rest
    would take at that rate (None while unknown). Children already finished at the
    first snapshot (replayed, or finished before the display came) are not speed. Once
    the run ended, the rate is the average over what the display saw moving."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()
        self.first: tuple[float, int] | None = None
        self.rate = 0.0
        self.left: float | None = None

    def observe(self, snap: Snapshot, now: float | None = None) -> Pace:
        now = time.monotonic() if now is None else now
        finished = snap.finished
        if self.first is None:
            self.first = (now, finished)
        self.samples.append((now, finished))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        since, before = self.samples[0] if snap.live else self.first
        span = now - since
        self.rate = max(0.0, (finished - before) / span) if span > 0 else 0.0
        remaining = snap.total - finished
        if not snap.live or remaining == 0:
            self.left = 0.0
        else:
            self.left = remaining / self.rate if self.rate > 0 else None
        return self

    def text(self) -> str:
        """``35/s, ~12 s left`` (``35/s`` once ended; empty while nothing moved)."""
        if self.rate <= 0:
            return ""
        shown = f"{self.rate:,.0f}/s" if self.rate >= 100 else f"{self.rate:.1f}/s"
        if self.left:
            shown += f", ~{duration(self.left)} left"
        return shown


def read(store: Store, run_id: str, *, since: datetime | None,
         start: datetime | None = None) -> Snapshot | None:
    """The run as it is now (None when it does not exist), in one query.

    ``since``: children completed before it count as replayed. ``start``: the elapsed
    time is measured from it rather than from the run's ``started_at``.
    """
    with store.connection() as conn:
        row = progress.snapshot(conn, run_id, since=since, failed_limit=FAILED_LIMIT)
    if row is None:
        return None
    begin = row.started_at
    if start is not None and begin is not None:
        begin = max(start, begin)
    end = row.finished_at if row.status in TERMINAL and row.finished_at else row.db_now
    elapsed = max(0.0, (end - begin).total_seconds()) if begin is not None else 0.0
    return Snapshot(run_id=row.run_id, name=row.name, status=row.status, states=row.states,
                    failed=list(row.failed or []), elapsed=elapsed, error=row.error)


def db_now(store: Store) -> datetime:
    with store.connection() as conn:
        return progress.now(conn)


def replayed_until(store: Store, run_id: str, names: list[str]) -> datetime | None:
    """The boundary between children an execution replayed (``names``) and those it ran:
    just after the last replayed one completed; None when it replayed none."""
    if not names:
        return None
    with store.connection() as conn:
        last = progress.last_finished(conn, run_id, list(names))
    return None if last is None else last + timedelta(microseconds=1)


def child_at(store: Store, run_id: str, index: int) -> ChildDetail | None:
    with store.connection() as conn:
        return progress.child_at(conn, run_id, index)


def text_line(snap: Snapshot, width: int = 24, pace: Pace | None = None) -> str:
    """One line: ``name [#######-----] 120/200 60% | running 2, failed 1 | 35/s, ~2 s left |
    3.2 s waiting`` (the pace when one is given and children moved)."""
    total = snap.total
    done = snap.finished
    filled = round(width * done / total) if total else (width if snap.status == "completed" else 0)
    bar = "#" * filled + "-" * (width - filled)
    pct = f"{100 * done // total}%" if total else ""
    parts = [f"{label} {n}" for label, n in snap.counts.items() if n and label != "completed"]
    title = snap.run_id if snap.name == snap.run_id else f"{snap.run_id} ({snap.name})"
    counted = f"{done}/{total} {pct}" if total else "no children"
    line = f"{title} [{bar}] {counted}"
    if parts:
        line += " | " + ", ".join(parts)
    if pace is not None and pace.text():
        line += f" | {pace.text()}"
    return f"{line} | {duration(snap.elapsed)} {snap.status}"


class Display(Protocol):
    """What a Follower feeds: a widget or a text line."""

    def follow_alive(self) -> bool: ...

    def follow_apply(self, snap: Snapshot, final: bool) -> None: ...

    def follow_read(self) -> Snapshot | None: ...


class Follower:
    """A daemon thread that keeps one display up to date from the database."""

    def __init__(self, display: Display, store: Store, run_id: str, *, rate: float = 10.0,
                 keep: bool = False) -> None:
        self._display = weakref.ref(display)
        # a text line has no other owner: held until the run ends; a widget is held by
        # its front-end (and ipywidgets) and is followed only while it lives
        self._kept = display if keep else None
        self.store = store
        self.run_id = run_id
        self.interval = 1.0 / rate
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=f"zart-progress-{run_id}")

    def release(self) -> None:
        """Stop holding the display (a text line whose owner stopped it)."""
        self._kept = None

    def start(self) -> Follower:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self.stopped.is_set()

    def _target(self) -> Any:
        target = self._display()
        if target is None or not target.follow_alive():
            return None
        return target

    def _loop(self) -> None:
        notes = listener(self.store)
        last: Snapshot | None = None
        last_change = time.monotonic()
        while not self.stopped.is_set():
            token = notes.token(self.run_id)
            target = self._target()
            if target is None:
                return
            try:
                snap = target.follow_read()
            except Exception:  # database away: try again at the slow poll
                snap = None
            del target  # hold the display only while delivering
            if snap is not None:
                now = time.monotonic()
                if snap != last:
                    last_change = now
                ended = not snap.live or (snap.status in TERMINAL
                                          and now - last_change > IDLE_STOP_SECONDS)
                target = self._target()
                if target is None:
                    return
                if snap != last or ended:
                    target.follow_apply(snap, ended)
                del target
                last = snap
                if ended:
                    self.stopped.set()
                    self._kept = None
                    return
            notes.wait(self.run_id, token, POLL_SECONDS)
            # the throttle: whatever the rate of notifications, one read per interval
            self.stopped.wait(self.interval)
