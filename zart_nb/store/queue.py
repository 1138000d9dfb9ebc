"""The fan-out queue: children are step rows of kind 'child' that workers claim with
``FOR UPDATE SKIP LOCKED``, hold under a lease, and complete in batches."""

from __future__ import annotations

from typing import Any

from . import sql
from .records import ChildFailure, ChildOutcome, ChildResult, ChildTask, NewChild, Owner
from .sql import Connection

INSERT = sql.query("insert_children")
OUTCOMES = sql.query("children_outcomes")
CLAIM = sql.query("claim_children")
CLAIM_OWN = sql.query("claim_run_children")
RENEW = sql.query("renew_child_leases")
COMPLETE = sql.query("complete_children")
FAIL = sql.query("fail_child")
RELEASE = sql.query("release_children")
RETAKE = sql.query("retake_children")
DURABLE_TRANSACTION = sql.query("durable_transaction")
REQUEUE_EXPIRED = sql.query("requeue_expired_children")
NEXT_RETRY_IN = sql.query("next_retry_in")


def insert(conn: Connection, who: Owner, namespace: str, children: list[NewChild]) -> None:
    """Queue a batch of children in one statement (failed or changed ones are queued
    again; running ones are left alone), while ``who`` owns the run."""
    sql.execute(conn, INSERT, {
        "run_id": who.run_id, "generation": who.generation, "owner": who.owner,
        "namespace": namespace,
        "names": [c.name for c in children], "seqs": [c.seq for c in children],
        "code_fps": [c.code_fp for c in children], "args_fps": [c.args_fp for c in children],
        "tasks": [c.task for c in children],
        "max_attempts": [c.max_attempts for c in children],
        "retries": [c.retry for c in children], "timeouts": [c.timeout_s for c in children]})


def outcomes(conn: Connection, run_id: str, generation: int, names: list[str]) -> list[ChildOutcome]:
    """The finished children among ``names``."""
    return sql.every(conn, OUTCOMES, {"run_id": run_id, "generation": generation,
                                      "names": names}, ChildOutcome)


def claim(conn: Connection, *, namespace: str, worker: str, limit: int,
          lease: float) -> list[ChildTask]:
    return sql.every(conn, CLAIM, {"namespace": namespace, "worker": worker, "limit": limit,
                                   "lease": lease}, ChildTask)


def claim_own(conn: Connection, who: Owner, *, worker: str, names: list[str],
              lease: float) -> list[ChildTask]:
    """The body that owns the run takes the named children it waits for as ``worker``
    (an executor runs them): the queued and ready ones, and those whose holder is gone.
    The statement also returns the children it failed (lost too often), so that its
    notification is sent even when it took none (queries.sql says why): dropped here."""
    taken = sql.every_positional(conn, CLAIM_OWN, {
        "run_id": who.run_id, "generation": who.generation, "owner": who.owner,
        "worker": worker, "names": names, "lease": lease}, _running)
    return [task for task in taken if task is not None]


def _running(status: str, *columns: Any) -> ChildTask | None:
    """A row of claim_run_children: its child task when the statement took it."""
    return ChildTask(*columns) if status == "running" else None


def renew_leases(conn: Connection, worker: str, lease: float) -> None:
    sql.execute(conn, RENEW, {"worker": worker, "lease": lease})


def requeue_expired(conn: Connection, lease: float) -> None:
    """Children whose worker stopped renewing its lease go back to the queue, unless the
    server started less than ``lease`` seconds ago: their workers, back from the outage,
    renew them first."""
    sql.execute(conn, REQUEUE_EXPIRED, {"lease": lease})


def complete(conn: Connection, worker: str, results: list[ChildResult]) -> list[str]:
    """Commit a batch of results at once, each for the attempt that produced it; a child
    another worker claimed since is left alone (the names of those written)."""
    placed = [r.value for r in results]
    claimed = [r.claimed for r in results]
    return sql.column(conn, COMPLETE, {
        "worker": worker,
        "run_ids": [c.run_id for c in claimed], "generations": [c.generation for c in claimed],
        "names": [c.name for c in claimed], "attempts": [c.attempts for c in claimed],
        "code_fps": [c.code_fp for c in claimed], "args_fps": [c.args_fp for c in claimed],
        "results": [p.inline for p in placed],
        "hashes": [p.hash for p in placed], "sizes": [p.size for p in placed],
        "payload_hashes": [p.hash for p in placed if p.data is not None],
        "payload_data": [p.data for p in placed if p.data is not None]})


def fail(conn: Connection, worker: str, failure: ChildFailure) -> int:
    """Store the failed attempt (fenced as ``complete``)."""
    c = failure.claimed
    return sql.rowcount(conn, FAIL, {
        "run_id": c.run_id, "generation": c.generation, "name": c.name, "attempt": c.attempts,
        "code_fp": c.code_fp, "args_fp": c.args_fp, "worker": worker,
        "error": sql.storable(failure.error), "error_kind": failure.error_kind,
        "error_payload": failure.error_payload, "traceback": sql.storable(failure.traceback),
        "retry_at": failure.retry_at})


def commit_outcomes(conn: Connection, worker: str, results: list[ChildResult],
                    failures: list[ChildFailure]) -> int:
    """A worker's finished children, all or none: one transaction, whose commit waits for
    the WAL flush (a worker's session does not, for its claims). How many were written
    (the others were no longer the worker's)."""
    with sql.transaction(conn):
        sql.execute(conn, DURABLE_TRANSACTION)
        written = len(complete(conn, worker, results)) if results else 0
        for failure in failures:
            written += fail(conn, worker, failure)
    return written


def retake(conn: Connection, worker: str, lease: float,
           held: list[ChildTask]) -> dict[tuple[str, int, str], int]:
    """Take again the children ``worker`` holds, after its connection was lost: {(run_id,
    generation, name): attempt} of those it holds now; the others were taken over."""
    rows = sql.every_positional(conn, RETAKE, {
        "worker": worker, "lease": lease,
        "run_ids": [t.run_id for t in held], "generations": [t.generation for t in held],
        "names": [t.name for t in held], "attempts": [t.attempts for t in held],
        "code_fps": [t.code_fp for t in held], "args_fps": [t.args_fp for t in held]},
        lambda run_id, generation, name, attempts: ((run_id, generation, name), attempts))
    return dict(rows)


def release(conn: Connection, worker: str, tasks: list[ChildTask]) -> int:
    """Give back children claimed but not started (their attempt undone)."""
    return sql.rowcount(conn, RELEASE, {"worker": worker, "run_ids": [t.run_id for t in tasks],
                                "generations": [t.generation for t in tasks],
                                "names": [t.name for t in tasks]})


def next_retry_in(conn: Connection, namespace: str) -> float | None:
    """Seconds until the earliest delayed child of ``namespace`` is ready (None: none)."""
    seconds: float | None = sql.value(conn, NEXT_RETRY_IN, {"namespace": namespace})
    return seconds
