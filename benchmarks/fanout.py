"""Fan-out: children through the PostgreSQL queue and the local worker pool.

fanout_throughput: N trivial children (5,000; quick: 1,000) scheduled by a body and run
  by the local pool of 2 worker processes (ZART_WORKERS=2, started by a warm-up run so
  that process start-up is not counted). children_per_s is N over the time from the
  first ``schedule`` to ``wait`` returning; scheduled_ms is the part spent in the
  ``schedule`` calls (pickling, buffering, inserts of full batches); last_commit_to_wait_ms
  is from the commit of the last child's result (max(finished_at) of the children, on the
  server's clock, corrected for its offset from this one) to ``wait`` returning.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime, timedelta, timezone

from tests.helpers import execute
from zart_nb import schedule, wait
from zart_nb.config import configure
from zart_nb.engine.worker import stop_local_pools
from zart_nb.store.connection import close_store, get_store

from .common import Context, Figures, benchmark

_ids = itertools.count()


def trivial(i):
    return i


def fan_out(n: int, marks: dict) -> int:
    marks["start"] = time.perf_counter()
    handles = [schedule(trivial, i) for i in range(n)]
    marks["scheduled"] = time.perf_counter()
    results = wait(handles)
    marks["end"] = time.perf_counter()
    marks["end_utc"] = datetime.now(timezone.utc)
    return len(results)


def server_offset(conn) -> timedelta:
    """The server's clock minus this one (midpoint of a round trip)."""
    before = datetime.now(timezone.utc)
    server = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    after = datetime.now(timezone.utc)
    return server - (before + (after - before) / 2)


@benchmark("fanout_throughput")
def fanout_throughput(ctx: Context) -> Figures:
    n = 1000 if ctx.quick else 5000
    configure(ctx.settings.evolve(workers=2))
    close_store()
    store = get_store()
    try:
        warm: dict = {}
        execute(fan_out, (20, warm), name="fanout-warm", run_id=f"bench-fan-warm-{os.getpid()}")
        marks: dict = {}
        run_id = f"bench-fan-{os.getpid()}-{next(_ids)}"
        assert execute(fan_out, (n, marks), name="fanout", run_id=run_id).value == n
        with store.connection() as conn:
            offset = server_offset(conn)
            last_commit = conn.execute(
                "SELECT max(finished_at) FROM steps WHERE run_id = %s AND kind = 'child'",
                (run_id,)).fetchone()[0]
    finally:
        stop_local_pools()
        configure(ctx.settings)
        close_store()
    total = marks["end"] - marks["start"]
    tail = (marks["end_utc"] + offset - last_commit).total_seconds()
    return {
        "children": n,
        "workers": 2,
        "children_per_s": round(n / total),
        "total_s": round(total, 3),
        "scheduled_ms": round((marks["scheduled"] - marks["start"]) * 1000, 1),
        "last_commit_to_wait_ms": round(tail * 1000, 1),
    }
