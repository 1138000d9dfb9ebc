"""Fan-out: children through the PostgreSQL queue and the local worker pool.

fanout_throughput: N trivial children (5,000; quick: 1,000) scheduled by a body and run
  by the local pool of 2 worker processes (ZART_WORKERS=2, started by a warm-up run so
  that process start-up is not counted). children_per_s is N over the time from the
  first ``schedule`` to ``wait`` returning; scheduled_ms is the part spent in the
  ``schedule`` calls (pickling, buffering, inserts of full batches); last_commit_to_wait_ms
  is from the commit of the last child's result (max(finished_at) of the children, on the
  server's clock, corrected for its offset from this one) to ``wait`` returning.
  Medians of 3 fan-outs (1 with --quick).
fanout_scaling: 400 children (quick: 100) that each sleep 20 ms (I/O-bound), run by a
  local pool of 1, 2 and 4 worker processes: children/s, and that rate over the ideal
  (workers / 20 ms), which stays near 1 while the queue is not the bottleneck.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from datetime import datetime, timedelta, timezone

from tests.helpers import execute
from zart_nb import schedule, wait
from zart_nb.config import configure
from zart_nb.engine.worker import stop_local_pools
from zart_nb.store.connection import close_store, get_store

from .common import Context, Figures, benchmark

_ids = itertools.count()
SLEEP_S = 0.02  # fanout_scaling's children: I/O-bound, 20 ms each


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
    runs = 1 if ctx.quick else 3
    configure(ctx.settings.evolve(workers=2))
    close_store()
    store = get_store()
    totals, scheduled, tails = [], [], []
    try:
        warm: dict = {}
        execute(fan_out, (20, warm), name="fanout-warm", run_id=f"bench-fan-warm-{os.getpid()}")
        for _ in range(runs):
            marks: dict = {}
            run_id = f"bench-fan-{os.getpid()}-{next(_ids)}"
            assert execute(fan_out, (n, marks), name="fanout", run_id=run_id).value == n
            with store.connection() as conn:
                offset = server_offset(conn)
                last_commit = conn.execute(
                    "SELECT max(finished_at) FROM steps WHERE run_id = %s AND kind = 'child'",
                    (run_id,)).fetchone()[0]
            totals.append(marks["end"] - marks["start"])
            scheduled.append(marks["scheduled"] - marks["start"])
            tails.append((marks["end_utc"] + offset - last_commit).total_seconds())
    finally:
        stop_local_pools()
        configure(ctx.settings)
        close_store()
    total = statistics.median(totals)
    return {
        "children": n,
        "workers": 2,
        "children_per_s": round(n / total),
        "total_s": round(total, 3),
        "scheduled_ms": round(statistics.median(scheduled) * 1000, 1),
        "last_commit_to_wait_ms": round(statistics.median(tails) * 1000, 1),
    }


def sleepy(i):
    time.sleep(SLEEP_S)
    return i


def sleepy_fan_out(n: int) -> int:
    return len(wait([schedule(sleepy, i) for i in range(n)]))


@benchmark("fanout_scaling")
def fanout_scaling(ctx: Context) -> Figures:
    n = 100 if ctx.quick else 400
    figures: Figures = {"children": n, "child_sleep_ms": SLEEP_S * 1000}
    for workers in (1, 2, 4):
        configure(ctx.settings.evolve(workers=workers))
        close_store()
        get_store()
        try:
            label = f"bench-scale-{workers}-{os.getpid()}"
            execute(sleepy_fan_out, (2 * workers,), name="scale-warm", run_id=label + "-warm")
            start = time.perf_counter()
            assert execute(sleepy_fan_out, (n,), name="scale", run_id=label).value == n
            seconds = time.perf_counter() - start
        finally:
            stop_local_pools()
            configure(ctx.settings)
            close_store()
        figures[f"children_per_s_{workers}_workers"] = round(n / seconds, 1)
        # 1.0: every worker slept all the time; the queue, the commits and the body
        # waiting cost nothing
        figures[f"of_ideal_{workers}_workers"] = round(n / seconds / (workers / SLEEP_S), 3)
    return figures
