"""Fan-out on a Dask cluster: zart-nb's durable children against plain Dask, in one run.

executor_dask_trivial: N trivial children (5,000; quick: 500) through a
``distributed.LocalCluster`` of 2 worker processes of 1 thread each: by a durable body
(``wait(handles, executor=client)``: rows, leases and results in PostgreSQL), and the same
N through the same cluster with ``client.map`` + ``client.gather`` and no zart-nb. The two
alternate, 3 repeats each (1 with --quick, after a warm-up of each); the figures are
medians, and zart_over_dask is the ratio of the medians (the aim: at most 1.5).

executor_dask_work: 200 children of 50 ms each (``time.sleep``; quick: 40) on the same
kind of cluster, both ways; ideal_s is the work divided by the 2 workers, and each
side's over_ideal says how close it comes.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.helpers import execute
from zart_nb import schedule, wait
from zart_nb.config import configure
from zart_nb.store.connection import close_store, get_store

from .common import Context, Figures, benchmark

_ids = itertools.count()
_CLIENT: dict[str, Any] = {}  # the body's input must pickle: the client is found here


def trivial(i):
    return i


def nap(i, seconds):
    time.sleep(seconds)
    return i


def durable_fan(fn: Callable[..., Any], n: int, *args: Any) -> int:
    return len(wait([schedule(fn, i, *args) for i in range(n)], executor=_CLIENT["client"]))


def _cluster() -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return cluster, Client(cluster)


def _compare(ctx: Context, fn: Callable[..., Any], n: int, *args: Any) -> dict[str, list[float]]:
    """Seconds of each repeat: the durable fan-out and plain ``map`` + ``gather``."""
    configure(ctx.settings.evolve(workers=0))
    close_store()
    get_store()
    cluster, client = _cluster()
    _CLIENT["client"] = client
    times: dict[str, list[float]] = {"zart": [], "dask": []}
    try:
        repeats = 1 if ctx.quick else 3
        for i in range(repeats + 1):  # the first round warms both up
            start = time.perf_counter()
            run_id = f"bench-exec-{os.getpid()}-{next(_ids)}"
            assert execute(durable_fan, (fn, n, *args), name="exec", run_id=run_id).value == n
            zart = time.perf_counter() - start
            start = time.perf_counter()
            assert len(client.gather(client.map(fn, range(n), *[[a] * n for a in args],
                                                pure=False))) == n
            dask = time.perf_counter() - start
            if i:
                times["zart"].append(zart)
                times["dask"].append(dask)
    finally:
        _CLIENT.clear()
        client.close()
        cluster.close()
        configure(ctx.settings)
        close_store()
    return times


@benchmark("executor_dask_trivial")
def executor_dask_trivial(ctx: Context) -> Figures:
    n = 500 if ctx.quick else 5000
    times = _compare(ctx, trivial, n)
    zart, dask = statistics.median(times["zart"]), statistics.median(times["dask"])
    return {"children": n, "workers": 2, "zart_s": round(zart, 3), "dask_s": round(dask, 3),
            "zart_children_per_s": round(n / zart), "dask_children_per_s": round(n / dask),
            "zart_over_dask": round(zart / dask, 2)}


@benchmark("executor_dask_work")
def executor_dask_work(ctx: Context) -> Figures:
    n, seconds = (40 if ctx.quick else 200), 0.05
    times = _compare(ctx, nap, n, seconds)
    zart, dask = statistics.median(times["zart"]), statistics.median(times["dask"])
    ideal = n * seconds / 2
    return {"children": n, "child_s": seconds, "workers": 2, "ideal_s": ideal,
            "zart_s": round(zart, 3), "dask_s": round(dask, 3),
            "zart_over_ideal": round(zart / ideal, 2), "dask_over_ideal": round(dask / ideal, 2)}
