"""One execution of a body: its journal, the replay decision, and its writes.

An ``Execution`` is what a running body sees through a ``ContextVar``: who owns the run
(every journal write is fenced by that ``Owner``), its journal (loaded in one query when
the body starts, results still pickled), the names used so far (a name used twice is an
error naming both call sites), and a report of what was replayed and executed.

``Execution.lookup`` is the one replay decision: steps, children, step cells, captures
and waits all ask it what to do with a name, and it records the answer in the report.

An async body's execution has a ``lane`` (engine/lane.py): its event loop, the thread
its store calls run on, and the queue that commits async steps together.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

from .. import codec
from ..errors import CodeChanged, DuplicateStepName, PayloadError, StoreError, Suspend, ZartError
from ..frames import call_site, format_users_traceback
from ..names import check_name
from ..payload_codec import human_size
from ..store import journal as journal_db
from ..store import payloads
from ..store import runs as runs_db
from ..store.connection import Store, redact
from ..store.journal import Completion
from ..store.records import JournalEntry, Owner, StepFailure
from ..store.sql import Connection
from .fingerprint import comparable
from .lane import AsyncLane
from .leases import InflightWatch
from .model import OnChange, Report, StepContext

# Kinds whose row is first written by their completion (a sleep's or an event wait's is
# written when the wait begins).
_ROW_WRITTEN_AT_COMPLETION = frozenset({"step", "capture"})

_current: ContextVar[Execution | None] = ContextVar("zart_execution", default=None)
_in_step: ContextVar[StepContext | None] = ContextVar("zart_step", default=None)


def current() -> Execution | None:
    """The execution whose body is running in this context (steps included)."""
    return _current.get()


def in_step() -> StepContext | None:
    """Where the calling code runs when it runs inside a step or a child, else None."""
    return _in_step.get()


def body_execution() -> Execution | None:
    """The execution when called from its body itself; None outside a body, and inside a
    step (a step's own calls are plain calls: they are part of that step)."""
    ex = _current.get()
    return None if ex is None or _in_step.get() is not None else ex


@contextmanager
def executing(ex: Execution) -> Iterator[Execution]:
    """Make ``ex`` the current execution for the block."""
    token = _current.set(ex)
    try:
        yield ex
    finally:
        _current.reset(token)


class step_scope:  # lower case: used as a function, ``with step_scope(where):``
    """Code in the block runs inside the step ``where`` (``context()`` tells it). A
    class, not a generator: entered around every step."""

    __slots__ = ("token", "where")

    def __init__(self, where: StepContext) -> None:
        self.where = where

    def __enter__(self) -> None:
        self.token = _in_step.set(self.where)

    def __exit__(self, *exc: object) -> None:
        _in_step.reset(self.token)


class Decision(NamedTuple):
    """What an execution does with one named step.

    ``replay``: the stored outcome stands (``entry`` holds it). ``run``: execute it as
    ``attempt`` (``changed`` says "code"/"arguments" when it ran before and changed).
    ``pending``: a child queued or running already, not to be queued twice.
    """

    action: Literal["replay", "run", "pending"]
    seq: int
    entry: JournalEntry | None
    attempt: int
    changed: str | None = None


class Execution:
    """One execution of a body for a run, owning the run while it lasts."""

    def __init__(self, store: Store, conn: Connection, who: Owner, *, name: str,
                 on_change: OnChange, namespace: str) -> None:
        self.store = store
        self.conn = conn
        self.who = who
        self.name = name
        self.on_change = on_change
        self.namespace = namespace
        self.report = Report()
        self.journal: dict[str, JournalEntry] = {}
        self.used: dict[str, tuple[str, int]] = {}  # name -> (file, line) of its call
        self.seq = 0
        self.stop_reason: str | None = None  # set by the heartbeat: cancelled, lease lost
        self.running: dict[str, tuple[str, int, float]] = {}  # steps in flight, oldest first
        self.watch: InflightWatch | None = None
        self.children: Any = None  # fanout's buffer of children, once the body schedules
        self.executor: Any = None  # where its waits run children (None: the default)
        self.progress_shown = False
        self.lock = threading.Lock()  # the body connection, shared with helper threads
        self.lane: AsyncLane | None = None  # an async body's loop, I/O thread and commits
        self.waits = 0  # waits in progress (an async body's may overlap)

    @property
    def run_id(self) -> str:
        return self.who.run_id

    @property
    def generation(self) -> int:
        return self.who.generation

    @property
    def owner(self) -> str:
        return self.who.owner

    def load(self) -> None:
        entries = journal_db.load(self.conn, self.run_id, self.generation)
        self.journal = {entry.name: entry for entry in entries}

    def on_its_loop(self) -> bool:
        """True when called on the event loop of this execution's async body."""
        if self.lane is None:
            return False
        try:
            return asyncio.get_running_loop() is self.lane.loop
        except RuntimeError:  # no loop runs in this thread
            return False

    # -- the replay decision ---------------------------------------------------
    def lookup(self, name: str, code_fp: bytes | None = None, args_fp: bytes | None = None, *,
               what: str = "step", inputs: str = "arguments") -> Decision:
        """Claim ``name`` for this execution and decide: replay, run, or leave pending.

        A completed step whose code or ``inputs`` changed runs again under the run's
        ``on_change="rerun"``, is replayed under ``"ignore"``, and raises CodeChanged
        under ``"error"``. A failed step, or one in flight when its process died, runs
        again with its attempts counted on.
        """
        entry = self.journal.get(name)
        seq = self.claim_name(name, known=entry is not None)
        if entry is None:
            self.report.executed.append(name)
            return Decision("run", seq, None, 1)
        if entry.status == "completed":
            if entry.code_fp == code_fp and entry.args_fp == args_fp:  # replay's common case
                changed = None
            else:
                changed = what_changed(entry, code_fp, args_fp, inputs)
            if changed is None or self.on_change == "ignore":
                self.report.replayed.append(name)
                return Decision("replay", seq, entry, entry.attempts)
            if self.on_change == "error":
                raise CodeChanged(f"{what} {name!r} of run {self.run_id!r}: its {changed} "
                                  "changed since it completed (on_change='error'); rerun it, "
                                  "or use on_change='rerun' or 'ignore'")
            self.report.changed.append(name)
            return Decision("run", seq, entry, entry.attempts + 1, changed)
        if entry.kind == "child" and entry.status in ("scheduled", "running"):
            return Decision("pending", seq, entry, entry.attempts)
        self.report.retried.append(name)
        self.report.executed.append(name)
        return Decision("run", seq, entry, entry.attempts + 1)

    def claim_name(self, name: str, *, known: bool = False) -> int:
        """Register one use of ``name`` in this execution; returns its sequence number.
        A ``known`` name, one in the journal, was checked when it was first written."""
        if self.stop_reason is not None:
            raise Suspend(self.stop_reason)
        if not known:
            check_name("step name", name)
        site = call_site()
        first = self.used.get(name)
        if first is not None:
            raise DuplicateStepName(
                f"step name {name!r} is used twice in one execution of run {self.run_id!r}: "
                f"first at {first[0]}:{first[1]}, again at {site[0]}:{site[1]}; give each "
                "call its own name (a {param} template or .named())")
        self.used[name] = site
        self.seq += 1
        return self.seq

    # -- the run's state ---------------------------------------------------------
    def set_status(self, status: str) -> None:
        """``waiting`` while the body waits (children, sleep, event), else ``running``."""
        self._write(None, runs_db.set_status, self.run_id, self.owner, status)

    def look_for_cancel(self) -> None:
        """Read the run's status now (a waiting body woken by a change of its run)."""
        if self.read(runs_db.status, self.run_id) == "cancelled":
            self.stop_reason = "cancelled"

    def read(self, query: Any, *args: Any) -> Any:
        """``query(conn, *args)`` on the body's connection."""
        with self.lock:
            return query(self.conn, *args)

    def check_live(self) -> None:
        if self.stop_reason is not None:
            raise Suspend(self.stop_reason)

    # -- reading the journal -------------------------------------------------------
    def value(self, entry: JournalEntry) -> Any:
        """The stored result of a completed entry, unpickled now."""
        if entry.result_hash is None and entry.result is not None:  # inline: every replay
            try:
                return codec.decode(entry.result)
            except PayloadError:
                pass  # refused again below, naming the step
        return self.stored_value(entry.result, entry.result_hash, f"result of step {entry.name!r}")

    def stored_value(self, inline: bytes | None, digest: bytes | None, what: str) -> Any:
        """A stored value: inline (the replay path: no query), or read from the payloads,
        whole or chunk after chunk."""
        try:
            if digest is None:
                if inline is None:
                    raise PayloadError(f"{what}: nothing was stored")
                return codec.decode(inline, what=what)
            with self.lock:
                return payloads.value(self.conn, inline, digest, what=what)
        except PayloadError as exc:
            raise PayloadError(str(exc)) from None  # named above; no driver frames

    # -- writing the journal ---------------------------------------------------------
    def begin(self, name: str, attempt: int) -> None:
        """Note that ``name`` is in flight (a watch thread writes it down if it lasts)."""
        if self.watch is None:
            self.watch = InflightWatch(self.store, self).start()
        self.running[name] = (name, attempt, time.monotonic())

    def ended(self, name: str) -> None:
        self.running.pop(name, None)

    @property
    def inflight(self) -> tuple[str, int, float] | None:
        """(step, attempt, since) of the oldest step in flight: the run row notes one (an
        async body's concurrent steps: the one running longest)."""
        try:
            return next(iter(self.running.values()), None)
        except RuntimeError:  # changed by the body while the watch looked: look next time
            return None

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def completion(self, name: str, kind: str, seq: int, value: Any, *, code_fp: bytes | None,
                   args_fp: bytes | None, attempt: int, max_attempts: int,
                   started_at: datetime | None) -> Completion:
        """``value`` encoded as the step's result (PayloadError when it won't pickle)."""
        placed = payloads.encode(self.store, value, what="result", owner=f"step {name!r}")
        fresh = kind in _ROW_WRITTEN_AT_COMPLETION and name not in self.journal
        return Completion(name, kind, seq, code_fp, args_fp, placed, attempt, max_attempts,
                          started_at, fresh)

    def complete(self, name: str, kind: str, seq: int, value: Any, *, code_fp: bytes | None,
                 args_fp: bytes | None, attempt: int, max_attempts: int,
                 started_at: datetime | None) -> None:
        """Commit ``value`` as the step's result (raises PayloadError when it won't pickle)."""
        self.write_completion(self.completion(name, kind, seq, value, code_fp=code_fp,
                                              args_fp=args_fp, attempt=attempt,
                                              max_attempts=max_attempts, started_at=started_at))

    def write_completion(self, done: Completion) -> None:
        try:
            written = self._write(f"step {done.name!r}", journal_db.complete, self.who, done)
        except StoreError as exc:
            if exc.sqlstate != payloads.DISK_FULL:
                raise
            raise StoreError(
                f"run {self.run_id!r}: the database's disk is full: cannot store the "
                f"{human_size(done.value.size)} result of step {done.name!r}; free space on "
                f"the server {redact(self.store.dsn)}, then execute it again",
                sqlstate=exc.sqlstate) from exc.__cause__
        if not written:
            raise Suspend(f"run {self.run_id!r} is no longer owned by this process")

    def write_completions(self, done: list[Completion]) -> None:
        """Commit several results in one statement (async steps that completed together;
        one alone goes by the single-row statement, about half the cost)."""
        if len(done) == 1:
            self.write_completion(done[0])
            return
        names = ", ".join(repr(d.name) for d in done[:3]) + (", …" if len(done) > 3 else "")
        if not self._write(f"steps {names}", journal_db.complete_many, self.who, done):
            raise Suspend(f"run {self.run_id!r} is no longer owned by this process")

    def fail(self, name: str, error: BaseException, *, kind: str, seq: int | None, attempt: int,
             started_at: datetime | None, code_fp: bytes | None = None,
             args_fp: bytes | None = None, cause: BaseException | None = None) -> None:
        """Store a failed step with its pickled exception and the traceback of ``cause``."""
        failure = StepFailure(name=name, kind="step", seq=seq, attempt=attempt,
                              error=one_line(error), error_kind=kind,
                              error_payload=encode_error(error),
                              traceback=format_users_traceback(cause or error),
                              started_at=started_at, code_fp=code_fp, args_fp=args_fp)
        self._write(f"step {name!r}", journal_db.fail, self.who, failure)

    def record_attempt(self, name: str, attempt: int, error: BaseException,
                       started_at: datetime | None) -> None:
        self._write(f"step {name!r}", journal_db.record_attempt, self.who, name=name, attempt=attempt,
                    error=one_line(error), started_at=started_at)

    def start_wait(self, name: str, kind: str, seq: int, until: datetime | None) -> None:
        """A sleep or an event wait begins: its wake time or deadline is stored."""
        self._write(f"step {name!r}", journal_db.start_wait, self.who, name=name, kind=kind, seq=seq,
                    until=until)

    def _write(self, what: str | None, write: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store write on the body's connection; a lost database names the run and
        ``what`` was being written (the step)."""
        try:
            with self.lock:
                return write(self.conn, *args, **kwargs)
        except StoreError as exc:
            where = f" while writing {what}" if what is not None else ""
            raise StoreError(f"run {self.run_id!r}{where}: {exc}",
                             sqlstate=exc.sqlstate) from exc.__cause__


def what_changed(entry: JournalEntry, code_fp: bytes | None, args_fp: bytes | None,
            inputs: str) -> str | None:
    """What changed since ``entry`` was recorded: "code", ``inputs``, or None.

    A fingerprint recorded by an older scheme cannot be compared with today's: it counts
    as unchanged, since a completed step never running again is the promise that matters
    most (docs/decisions.md).
    """
    if _differs(entry.code_fp, code_fp):
        return "code"
    if _differs(entry.args_fp, args_fp):
        return inputs
    return None


def _differs(recorded: bytes | None, current: bytes | None) -> bool:
    return (recorded is not None and current is not None and comparable(recorded, current)
            and recorded != current)


def one_line(error: BaseException) -> str:
    """``TypeName: first line of the message``."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def encode_error(error: BaseException) -> bytes:
    """The pickled exception, sealed (see ``pickled_error``)."""
    return codec.seal_pickle(pickled_error(error), what="error")


def pickled_error(error: BaseException) -> bytes:
    """The exception pickled (unsealed); without its cause if that won't pickle; else its
    text as a ZartError. The user's exception object is left as it is."""
    candidates = [error]
    if error.__cause__ is not None:
        candidates.append(_without_cause(error))
    for candidate in candidates:
        try:
            body = codec.dumps(candidate)
        except Exception:  # pickling raises many kinds of errors
            continue
        if len(body) <= codec.MAX_PAYLOAD:
            return body
    return codec.dumps(ZartError(one_line(error)))


def _without_cause(error: BaseException) -> BaseException:
    """A copy of ``error`` whose cause is dropped (pickled through a shallow copy)."""
    clone = copy.copy(error)
    clone.__cause__ = None
    clone.__context__ = None
    return clone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
