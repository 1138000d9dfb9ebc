"""A run's journal: the steps of its current generation, loaded at once, written one by
one while their owner still owns the run (``Owner`` fences every write)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from ..errors import StoreError
from . import sql
from .records import Attempt, JournalEntry, Owner, Placed, StepFailure, StepRow, StepSummary
from .sql import Connection

LOAD = sql.query("load_journal")
MARK_INFLIGHT = sql.query("mark_inflight")
COMPLETE = sql.query("complete_step")
INSERT = sql.query("insert_step")
UNIQUE_VIOLATION = "23505"
COMPLETE_MANY = sql.query("complete_steps")
FAIL = sql.query("fail_step")
RECORD_ATTEMPT = sql.query("record_attempt")
START_WAIT = sql.query("start_wait")
GET_STEP = sql.query("get_step")
LIST_STEPS = sql.query("list_steps")
ATTEMPTS = sql.query("step_attempts")
DURABILITY = sql.query("set_durability")


def load(conn: Connection, run_id: str, generation: int) -> list[JournalEntry]:
    """Every step of the generation, and the step in flight when the last owner stopped
    (as a 'running' entry), in one query; results stay pickled."""
    return sql.every_positional(conn, LOAD, {"run_id": run_id, "generation": generation},
                                JournalEntry, binary=True)


def mark_inflight(conn: Connection, run_id: str, owner: str, name: str, attempt: int) -> None:
    sql.execute(conn, MARK_INFLIGHT, {"run_id": run_id, "owner": owner, "name": name,
                                      "attempt": attempt})


class Completion(NamedTuple):
    """A step's result, encoded and placed, ready to be committed. ``fresh``: the step
    had no row when its execution began, so its first commit is a plain INSERT."""

    name: str
    kind: str
    seq: int
    code_fp: bytes | None
    args_fp: bytes | None
    value: Placed
    attempt: int
    max_attempts: int
    started_at: datetime | None
    fresh: bool = False


def complete(conn: Connection, who: Owner, done: Completion) -> bool:
    """Commit a step's result; False when ``who`` no longer owns the run (or it was
    cancelled): nothing was written."""
    value = done.value
    params = {
        "run_id": who.run_id, "generation": who.generation, "owner": who.owner,
        "name": done.name, "kind": done.kind, "seq": done.seq, "code_fp": done.code_fp,
        "args_fp": done.args_fp, "result": value.inline, "hash": value.hash,
        "data": value.data, "size": value.size, "attempt": done.attempt,
        "max_attempts": done.max_attempts, "started_at": done.started_at}
    if done.fresh and value.data is None:
        try:
            return sql.rowcount(conn, INSERT, params) > 0
        except StoreError as exc:
            if exc.sqlstate != UNIQUE_VIOLATION:
                raise
    return sql.rowcount(conn, COMPLETE, params) > 0


def complete_many(conn: Connection, who: Owner, done: list[Completion]) -> bool:
    """Commit the results of several steps in one statement (names distinct); False when
    ``who`` no longer owns the run: none was written."""
    payloads = {d.value.hash: d.value.data for d in done if d.value.data is not None}
    written = sql.rowcount(conn, COMPLETE_MANY, {
        "run_id": who.run_id, "generation": who.generation, "owner": who.owner,
        "names": [d.name for d in done], "kinds": [d.kind for d in done],
        "seqs": [d.seq for d in done], "code_fps": [d.code_fp for d in done],
        "args_fps": [d.args_fp for d in done], "results": [d.value.inline for d in done],
        "hashes": [d.value.hash for d in done], "sizes": [d.value.size for d in done],
        "attempts": [d.attempt for d in done], "max_attempts": [d.max_attempts for d in done],
        "started_ats": [d.started_at for d in done],
        "payload_hashes": list(payloads), "payload_data": list(payloads.values())})
    return written == len(done)


def fail(conn: Connection, who: Owner, failure: StepFailure) -> None:
    """Store a step that failed for good, with its exception and traceback."""
    sql.execute(conn, FAIL, {
        "run_id": who.run_id, "generation": who.generation, "worker": who.owner,
        "name": failure.name, "kind": failure.kind, "seq": failure.seq,
        "attempt": failure.attempt, "error": sql.storable(failure.error),
        "error_kind": failure.error_kind, "error_payload": failure.error_payload,
        "traceback": sql.storable(failure.traceback), "started_at": failure.started_at,
        "code_fp": failure.code_fp, "args_fp": failure.args_fp})


def record_attempt(conn: Connection, who: Owner, *, name: str, attempt: int, error: str,
                   started_at: datetime | None) -> None:
    """Keep a failed attempt that will be retried."""
    sql.execute(conn, RECORD_ATTEMPT, {
        "run_id": who.run_id, "generation": who.generation, "name": name, "attempt": attempt,
        "status": "failed", "error": sql.storable(error), "worker": who.owner, "started_at": started_at})


def start_wait(conn: Connection, who: Owner, *, name: str, kind: str, seq: int,
               until: datetime | None) -> None:
    """A sleep or an event wait begins: its wake time or deadline is stored."""
    sql.execute(conn, START_WAIT, {
        "run_id": who.run_id, "generation": who.generation, "owner": who.owner, "name": name,
        "kind": kind, "seq": seq, "not_before": until})


def step(conn: Connection, run_id: str, name: str) -> StepRow | None:
    return sql.one(conn, GET_STEP, {"run_id": run_id, "name": name}, StepRow, binary=True)


def steps(conn: Connection, run_id: str) -> list[StepSummary]:
    return sql.every(conn, LIST_STEPS, {"run_id": run_id}, StepSummary)


def attempts(conn: Connection, run_id: str, name: str | None = None) -> list[Attempt]:
    """The attempts that did not end their step, of ``name`` or of every step."""
    return sql.every(conn, ATTEMPTS, {"run_id": run_id, "name": name}, Attempt)


def set_durability(conn: Connection, synchronous: bool) -> None:
    """Whether this session's commits wait for the WAL flush."""
    sql.execute(conn, DURABILITY, {"value": "on" if synchronous else "off"})
