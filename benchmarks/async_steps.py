"""Async steps: a wide gather in one body, and the cost of one async step against a sync one.

concurrent_async_steps: one async body gathers N async steps of 10 ms each (1,000; quick:
  200), sync commits. ``wall_s`` is the body's run from the claim to its end; the lower
  bound is the 10 ms of a step plus committing the N results, measured raw in the same
  run (``raw_batch_commit_s``: one multi-row INSERT of the same bytes; next to it
  ``raw_sequential_commits_s``, N single-row INSERTs, what committing each step alone
  costs at least). ``commit_statements`` counts the statements that committed the
  results: rows written by one statement share their ``finished_at`` (``now()`` is the
  transaction's time), so it is the number of distinct ``finished_at`` of the run's steps;
  ``results_per_statement`` is N over it. ``process_cpu_s`` is the CPU time this process
  spent in the run (every thread): the engine's Python work per step (fingerprints,
  name, pickling, HMAC), which the lower bound leaves out.

sequential_async_overhead: N trivial steps one after another (2,000; quick: 300), async
  steps awaited in an async body against sync steps in a sync body, in the same run, with
  sync commits and with ``durability="async"`` (no WAL flush waited for, where the CPU
  cost of the async machinery shows most). The aim: an async step within 10 % of a sync
  one. The two sides alternate, 5 times (a busy moment of a shared machine hits both);
  the ratios are the medians of the 5 pairs' ratios.

Every figure is the median of 3 repetitions (5 for the sequential pairs; 1 with
``--quick``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from zart_nb import codec, step
from zart_nb.engine.execute import RunRequest, execute, execute_async
from zart_nb.engine.model import Options
from zart_nb.store.connection import get_store

from .common import Context, Figures, benchmark, median_of

STEP_SECONDS = 0.010
_ids = itertools.count()


@step("wide-{i}")
async def ten_ms(i: int) -> int:
    await asyncio.sleep(STEP_SECONDS)
    return i


@step("async-{i}")
async def async_trivial(i: int) -> int:
    return i


@step("sync-{i}")
def sync_trivial(i: int) -> int:
    return i


async def wide_body(n: int) -> int:
    return sum(await asyncio.gather(*(ten_ms(i) for i in range(n))))


async def async_body(n: int) -> int:
    for i in range(n):
        await async_trivial(i)
    return n


def sync_body(n: int) -> int:
    for i in range(n):
        sync_trivial(i)
    return n


def _run_id(label: str) -> str:
    return f"bench-{label}-{os.getpid()}-{next(_ids)}"


def _execute(body: Callable[..., Any], n: int, label: str, durability: str = "sync") -> str:
    run_id = _run_id(label)
    request = RunRequest(body, label, run_id, (n,), options=Options(durability=durability))
    if label.startswith("sync"):
        execute(request)
    else:
        asyncio.run(execute_async(request))  # the benchmark's own loop, as a script's
    return run_id


@benchmark("concurrent_async_steps")
def concurrent_async_steps(ctx: Context) -> Figures:
    n = 200 if ctx.quick else 1000
    runs = 1 if ctx.quick else 3
    ctx.settings  # noqa: B018 - configures the process for this server
    store = get_store()
    _execute(wide_body, 10, "wide-warm")
    walls, cpus, statements = [], [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        run_id = _execute(wide_body, n, "wide")
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        with store.connection() as conn:
            statements.append(conn.execute(
                "SELECT count(DISTINCT finished_at) FROM steps WHERE run_id = %s",
                (run_id,)).fetchone()[0])
    data = codec.encode(12345)
    with store.connection() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_results (id integer PRIMARY KEY, data bytea)")

        def batch() -> None:
            conn.execute("TRUNCATE raw_results")
            conn.execute("INSERT INTO raw_results SELECT i, %b FROM generate_series(1, %s) AS i",
                         (data, n))

        def sequential() -> None:
            conn.execute("TRUNCATE raw_results")
            for i in range(n):
                conn.execute("INSERT INTO raw_results VALUES (%s, %b)", (i, data))

        batch_s = median_of(runs, batch)
        sequential_s = median_of(runs, sequential)
        conn.execute("DROP TABLE raw_results")
    wall = statistics.median(walls)
    commits = statistics.median(statements)
    bound = STEP_SECONDS + batch_s
    return {
        "steps": n, "step_ms": STEP_SECONDS * 1000,
        "wall_s": round(wall, 4),
        "lower_bound_s": round(bound, 4),
        "wall_over_lower_bound": round(wall / bound, 2),
        "process_cpu_s": round(statistics.median(cpus), 4),
        "raw_batch_commit_s": round(batch_s, 4),
        "raw_sequential_commits_s": round(sequential_s, 4),
        "commit_statements": commits,
        "results_per_statement": round(n / commits, 1),
    }


@benchmark("sequential_async_overhead")
def sequential_async_overhead(ctx: Context) -> Figures:
    n = 300 if ctx.quick else 2000
    runs = 1 if ctx.quick else 5
    ctx.settings  # noqa: B018
    _execute(sync_body, 10, "sync-warm")
    _execute(async_body, 10, "async-warm")
    figures: Figures = {"steps": n}
    for durability in ("sync", "async"):
        sync_times, async_times = [], []
        for _ in range(runs):  # interleaved: a busy moment of the machine hits both sides
            sync_times.append(median_of(1, lambda d=durability: _execute(sync_body, n, "sync-seq", d)))
            async_times.append(median_of(1, lambda d=durability: _execute(async_body, n, "async-seq", d)))
        suffix = "" if durability == "sync" else "_no_flush"
        figures[f"sync_us_per_step{suffix}"] = round(statistics.median(sync_times) / n * 1e6, 1)
        figures[f"async_us_per_step{suffix}"] = round(statistics.median(async_times) / n * 1e6, 1)
        figures[f"async_over_sync{suffix}"] = round(statistics.median(
            a / s for a, s in zip(async_times, sync_times, strict=True)), 3)
    return figures
