"""The journal of one execution of a body, and the execution itself.

An ``Execution`` is what a running body sees through a ``ContextVar``: the run, its
journal (loaded in one query when the body starts, results still pickled), the names
used so far (a name used twice is an error naming both call sites), and a report of
what was replayed and executed. Only the engine reaches it; user code goes through
``step``, ``schedule``, ``capture`` and friends.
"""

from __future__ import annotations

import operator
import os
import sys
import threading
import time
import traceback as tb_module
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg

from .. import codec
from ..errors import DuplicateStepName, PayloadError, StoreError, Suspend, UsageError, ZartError
from ..payload_codec import human_size
from ..store import queries, results
from ..store.connection import Store, redact
from .model import Entry, Report

INLINE_LIMIT = 16 * 1024  # results larger than this go to the payloads table, stored once
MAX_NAME_BYTES = 1000  # run ids and step/event names are keys of PostgreSQL b-tree indexes
_ENTRY_FIELDS = operator.itemgetter(*Entry.__dataclass_fields__)

_current: ContextVar[Execution | None] = ContextVar("zart_execution", default=None)
_in_step: ContextVar[StepContext | None] = ContextVar("zart_step", default=None)


@dataclass(frozen=True)
class StepContext:
    """What ``context()`` returns: where the calling code runs."""

    run_id: str | None
    durable_name: str | None
    step: str | None
    attempt: int


def current() -> Execution | None:
    return _current.get()


def in_step() -> StepContext | None:
    return _in_step.get()


class Execution:
    """One execution of a body for a run, owning the run while it lasts."""

    def __init__(self, store: Store, conn: psycopg.Connection, *, run_id: str, name: str,
                 generation: int, owner: str, on_change: str, namespace: str) -> None:
        self.store = store
        self.conn = conn
        self.run_id = run_id
        self.name = name
        self.generation = generation
        self.owner = owner
        self.on_change = on_change
        self.namespace = namespace
        self.report = Report()
        self.journal: dict[str, Entry] = {}
        self.used: dict[str, tuple[str, int]] = {}  # name -> (file, line) of its call
        self.seq = 0
        self.stop_reason: str | None = None  # set by the heartbeat: cancelled, lease lost
        self.inflight: tuple[str, int, float] | None = None  # (step, attempt, since)
        self.watch: InflightWatch | None = None
        self.children = None  # fanout.Children, once the body schedules
        self.progress_shown = False
        self.lock = threading.Lock()  # the body connection, shared with helper threads

    def load(self) -> None:
        rows = queries.all_rows(self.conn, "load_journal", binary=True, run_id=self.run_id,
                                generation=self.generation)
        fields = _ENTRY_FIELDS  # positional: a third of the cost of Entry.from_row per row
        self.journal = {row["name"]: Entry(*fields(row)) for row in rows}

    # -- names -------------------------------------------------------------
    def claim_name(self, name: str) -> int:
        """Register one use of ``name`` in this execution; returns its sequence number."""
        self.check_live()
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

    def set_status(self, status: str) -> None:
        """``waiting`` while the body waits (children, sleep, event), else ``running``."""
        self._write("set_run_status", run_id=self.run_id, owner=self.owner, status=status)

    def look_for_cancel(self) -> None:
        """Read the run's status now (a waiting body woken by a change of its run)."""
        with self.lock:
            row = queries.one(self.conn, "run_status", run_id=self.run_id)
        if row is not None and row["status"] == "cancelled":
            self.stop_reason = "cancelled"

    def check_live(self) -> None:
        if self.stop_reason is not None:
            raise Suspend(self.stop_reason)

    # -- reading the journal -------------------------------------------------
    def value(self, entry: Entry) -> Any:
        try:
            return self.stored_value(entry.result, entry.result_hash)
        except PayloadError as exc:  # named here: the replay path builds no message
            raise PayloadError(f"result of step {entry.name!r}: {exc}") from None

    def stored_value(self, inline: bytes | None, digest: bytes | None, *,
                     what: str = "payload") -> Any:
        """A stored result: inline (the replay path: no query), or read from the payloads,
        whole or chunk after chunk."""
        if digest is None:
            return codec.decode(inline, what=what)
        with self.lock:
            return results.value(self.conn, None, digest, what=what)

    def stored_error(self, entry: Entry) -> BaseException:
        if entry.error_payload is not None:
            try:
                return codec.decode(entry.error_payload, what=f"error of step {entry.name!r}")
            except PayloadError:
                pass
        return ZartError(entry.error or f"step {entry.name!r} failed")

    # -- writing the journal -------------------------------------------------
    def begin(self, name: str, attempt: int) -> None:
        """Note that ``name`` is in flight (the watch writes it down if it lasts)."""
        if self.watch is None:
            self.watch = InflightWatch(self)
        self.inflight = (name, attempt, time.monotonic())

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def complete(self, name: str, kind: str, seq: int, value: Any, *, code_fp: bytes | None,
                 args_fp: bytes | None, attempt: int, max_attempts: int,
                 started_at: datetime | None) -> None:
        """Commit ``value`` as the step's result (raises PayloadError when it won't pickle)."""
        stored = results.encode(self.store, value, what="result", owner=f"step {name!r}")
        inline, digest, data = split_payload(stored)
        written = self._write("complete_step", run_id=self.run_id, generation=self.generation,
                              name=name, kind=kind, seq=seq, code_fp=code_fp, args_fp=args_fp,
                              result=inline, hash=digest, data=data,
                              size=stored.size, attempt=attempt, max_attempts=max_attempts,
                              started_at=started_at, owner=self.owner)
        if written == 0:
            raise Suspend(f"run {self.run_id!r} is no longer owned by this process")

    def fail(self, name: str, error: BaseException, *, kind: str, seq: int | None, attempt: int,
             started_at,
             code_fp: bytes | None = None, args_fp: bytes | None = None,
             cause: BaseException | None = None) -> None:
        """Store a failed step with its pickled exception and the traceback of ``cause``."""
        shown = cause or error
        self._write("fail_step", run_id=self.run_id, generation=self.generation, name=name,
                    kind="step", seq=seq, attempt=attempt, error=one_line(error), error_kind=kind,
                    error_payload=encode_error(error), traceback=format_traceback(shown),
                    worker=self.owner, started_at=started_at, code_fp=code_fp, args_fp=args_fp)

    def record_attempt(self, name: str, attempt: int, error: BaseException, started_at) -> None:
        self._write("record_attempt", run_id=self.run_id, generation=self.generation, name=name,
                    attempt=attempt, status="failed", error=one_line(error), worker=self.owner,
                    started_at=started_at)

    def _write(self, query: str, **params) -> int:
        try:
            with self.lock:
                return queries.rowcount(self.conn, query, **params)
        except psycopg.errors.DiskFull as exc:
            size, name = params.get("size"), params.get("name")
            what = f"the {human_size(size)} result of step {name!r}" if size else f"step {name!r}"
            raise StoreError(f"run {self.run_id!r}: the database's disk is full: cannot store "
                             f"{what}; free space on the server {redact(self.store.dsn)}, then "
                             "execute it again") from exc
        except psycopg.OperationalError as exc:
            raise StoreError(f"run {self.run_id!r}: lost the database {redact(self.store.dsn)} "
                             f"while writing step {params.get('name')!r}: "
                             f"{str(exc).strip().splitlines()[0]}") from exc


class InflightWatch:
    """Writes down which step the body executes, once it has run for a moment.

    So that a step killed mid-way is known to have had an attempt, the run row notes
    the step in flight. Writing that before every step would add a round trip to each
    one; instead this thread looks every ``GRACE`` seconds and notes a step that has
    been running longer than that. A step killed within ``GRACE`` of its start runs
    again with its attempt under-counted by one; it still runs again (at-least-once).
    """

    GRACE = 0.02

    def __init__(self, ex: Execution) -> None:
        self.ex = ex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="zart-inflight")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        noted = None
        conn = None
        try:
            while not self._stop.wait(self.GRACE):
                current = self.ex.inflight
                if current is None or current == noted or time.monotonic() - current[2] < self.GRACE:
                    continue
                if conn is None:
                    conn = self.ex.store.connect()
                queries.execute(conn, "mark_inflight", run_id=self.ex.run_id, owner=self.ex.owner,
                                name=current[0], attempt=current[1])
                noted = current
        except (ZartError, psycopg.Error):
            return  # the database is gone; the body's own writes will say so
        finally:
            if conn is not None:
                conn.close()


def check_name(what: str, name: str) -> None:
    """Refuse a name PostgreSQL cannot store as a key: a NUL, or too long for an index."""
    if "\x00" in name:
        raise UsageError(f"{what} {name[:40]!r} contains a NUL character")
    if len(name) > MAX_NAME_BYTES // 4 and len(name.encode()) > MAX_NAME_BYTES:
        raise UsageError(f"{what} {name[:40]!r}... is {len(name.encode())} bytes long; at most "
                         f"{MAX_NAME_BYTES} (it is a key of the journal's indexes)")


def split_payload(stored: results.Encoded) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(inline bytes, payload hash, bytes for the payloads table): a small result inline;
    a larger one whole in payloads (stored once per content) by the step's commit; a large
    one in chunks, its manifest already stored."""
    if stored.address is not None:
        return None, stored.address, None
    if len(stored.data) <= INLINE_LIMIT:
        return stored.data, None, None
    return None, codec.digest(stored.data), stored.data


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def encode_error(error: BaseException) -> bytes:
    """The pickled exception; without its cause if that won't pickle; else its text."""
    try:
        return codec.encode(error, what="error")
    except PayloadError:
        if error.__cause__ is not None:
            error.__cause__ = None
            return encode_error(error)
        return codec.encode(ZartError(one_line(error)), what="error")


def format_traceback(error: BaseException) -> str:
    """The traceback a user reads: from their own code on, zart_nb's frames left out."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return "".join(tb_module.format_exception(type(error), error, tb or error.__traceback__))


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def call_site() -> tuple[str, int]:
    """(file, line) of the innermost user code calling into zart_nb (on every step: cheap)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return ("<unknown>", 0)
    return (frame.f_code.co_filename, frame.f_lineno)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
