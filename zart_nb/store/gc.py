"""Removing old ended runs with their journal, and payloads nothing references.

Each batch is one transaction that also locks the payloads table against concurrent
step commits (for its few milliseconds), so that a payload removed is never one that a
commit is reusing at that moment.
"""

from __future__ import annotations

from . import sql
from .records import GcCounts
from .sql import Connection

PREVIEW = sql.query("gc_preview")
LOCK_PAYLOADS = sql.query("gc_lock_payloads")
RUNS_BATCH = sql.query("gc_runs_batch")
ORPHANS_BATCH = sql.query("gc_orphan_payloads_batch")


def preview(conn: Connection, statuses: list[str], seconds: float) -> GcCounts:
    counts = sql.one(conn, PREVIEW, {"statuses": statuses, "seconds": seconds}, GcCounts)
    assert counts is not None  # an aggregate always has a row
    return counts


def remove_runs(conn: Connection, statuses: list[str], seconds: float, batch: int) -> GcCounts:
    """Remove one batch of ended runs older than ``seconds``, their steps and payloads."""
    with sql.transaction(conn):
        sql.execute(conn, LOCK_PAYLOADS)
        counts = sql.one(conn, RUNS_BATCH, {"statuses": statuses, "seconds": seconds,
                                            "batch": batch}, GcCounts)
    assert counts is not None
    return counts


def remove_orphan_payloads(conn: Connection, seconds: float, batch: int) -> int:
    """Remove one batch of payloads older than ``seconds`` that nothing references."""
    with sql.transaction(conn):
        sql.execute(conn, LOCK_PAYLOADS)
        return sql.rowcount(conn, ORPHANS_BATCH, {"seconds": seconds, "batch": batch})
