"""Removing old ended runs with their journal, and payloads nothing references.

Each batch is one transaction that also locks the payloads table against concurrent
step commits (for its few milliseconds), so that a payload removed is never one that a
commit is reusing at that moment. Then the chunks of large payloads that no manifest
names any more go, in batches too; payloads and chunks written within the grace (an
hour) are kept whatever the cutoff, since a writer may be about to name them.
"""

from __future__ import annotations

from . import sql
from .payloads import UNREFERENCED_GRACE_S
from .records import GcCounts, GcPreview
from .sql import Connection

PREVIEW = sql.query("gc_preview")
LOCK_PAYLOADS = sql.query("gc_lock_payloads")
RUNS_BATCH = sql.query("gc_runs_batch")
ORPHANS_BATCH = sql.query("gc_orphan_payloads_batch")
ORPHAN_CHUNKS_BATCH = sql.query("gc_orphan_chunks_batch")


def _ages(seconds: float) -> dict[str, float]:
    """The cutoff, and the grace that keeps what a writer may still be naming."""
    return {"seconds": seconds, "grace": UNREFERENCED_GRACE_S}


def preview(conn: Connection, statuses: list[str], seconds: float) -> GcPreview:
    counts = sql.one(conn, PREVIEW, {"statuses": statuses, **_ages(seconds)}, GcPreview)
    assert counts is not None  # an aggregate always has a row
    return counts


def remove_runs(conn: Connection, statuses: list[str], seconds: float, batch: int) -> GcCounts:
    """Remove one batch of ended runs older than ``seconds``, their steps and payloads."""
    with sql.transaction(conn):
        sql.execute(conn, LOCK_PAYLOADS)
        counts = sql.one(conn, RUNS_BATCH, {"statuses": statuses, "batch": batch,
                                            **_ages(seconds)}, GcCounts)
    assert counts is not None
    return counts


def remove_orphan_payloads(conn: Connection, seconds: float, batch: int) -> int:
    """Remove one batch of payloads older than ``seconds`` that nothing references."""
    with sql.transaction(conn):
        sql.execute(conn, LOCK_PAYLOADS)
        return sql.rowcount(conn, ORPHANS_BATCH, {"batch": batch, **_ages(seconds)})


def remove_orphan_chunks(conn: Connection, seconds: float, batch: int) -> int:
    """Remove one batch of chunks no manifest names, unused for ``seconds`` (rows a writer
    holds are skipped: see ``store.payloads``)."""
    return sql.rowcount(conn, ORPHAN_CHUNKS_BATCH, {"batch": batch, **_ages(seconds)})
