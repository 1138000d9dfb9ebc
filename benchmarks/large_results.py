"""Large results: checkpoint and restore time and memory, against raw PostgreSQL.

large_results: a step returns a compressible pandas DataFrame of 8 M rows (ids, prices,
quantities, a categorical, UTC timestamps: 232 MB; 1 M rows with --quick), or random
float64 of the same size (incompressible). zart checkpoints it (a fresh run of a body
calling that step) and restores it (the run executed again in a fresh process, the
step replayed). raw is one binary INSERT of ``pickle.dumps(value, protocol=5)`` (in
band) into a bytea column stored EXTERNAL, and one SELECT plus ``pickle.loads``, on the
same server in the same run. Each operation runs in a fresh process; its time covers
the operation only (not the imports, not building the value); its memory is the
process's peak RSS (Linux VmHWM) during the operation, above its RSS after the imports
(for a checkpoint: before building the value), in multiples of the value's size.
Figures are medians of 3 runs (1 with --quick); the stores are emptied before each
checkpoint, so that nothing is found stored already. raw's checkpoint is slow for a
reason of libpq's own, not the server's: sending one parameter of 232 MB costs the
client about 10 s of CPU (raw_checkpoint_client_cpu_s), a cost that grows faster than
the value; zart sends chunks of 4 MiB.

large_results_tuning: the same two values stored through ``zart_nb.store.results`` (a
large payload's own transaction, no step) and read back, in one process, for chunk
sizes of 1 to 16 MiB and zstd levels 1 and 3 (random data is stored raw: one level);
medians of 3. What chose the defaults. Chunk size: 4 MiB checkpoints and restores
both values fastest or within noise of the fastest; 16 MiB costs the most on random
data (libpq's sending cost grows faster than a parameter's size: the raw INSERT above
shows it at its extreme), and 1 MiB means four times the statements; 4 MiB also keeps a
3 GB result at 750 chunks and the memory beyond the value at a few chunks. Level: 3
stores the frame 18 % smaller than 1 but checkpoints it about a third slower and
restores it no faster; with the server this close, bytes cost less than the
compressor's time, so level 1. The chunks table stores its data EXTERNAL (out of line,
as is): with MAIN (the last rows), PostgreSQL tries pglz on every chunk, which made the
frame's checkpoint about a third slower for 8 % less on disk, and saves nothing on
random data.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from zart_nb.store.connection import Store

from .common import SCHEMA, SECRET, Context, Figures, benchmark

REPO = Path(__file__).resolve().parents[1]
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS raw_results (id integer PRIMARY KEY, data bytea NOT NULL);
ALTER TABLE raw_results ALTER COLUMN data SET STORAGE EXTERNAL;
"""
EMPTY = "TRUNCATE raw_results, runs, steps, payloads, payload_chunks, chunks CASCADE"
OPERATIONS = ("zart_checkpoint", "zart_restore", "raw_checkpoint", "raw_restore")


def make_value(case: str, rows: int):
    """The value a step returns: the ``frame`` (compressible) or ``random`` float64."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    if case == "random":
        return rng.random(rows * 29 // 8)  # as many bytes as the frame (29 per row)
    venues = [f"venue-{i}" for i in range(12)]
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "price": np.round(rng.gamma(2.0, 20.0, rows), 2),
        "quantity": rng.integers(1, 100, rows, dtype=np.int32),
        "venue": pd.Categorical.from_codes(rng.integers(0, 12, rows), venues),
        "at": start + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86_400 * 10**9, rows)), "ns"),
    })


def size_of(value) -> int:
    if hasattr(value, "memory_usage"):
        return int(value.memory_usage(deep=True, index=False).sum())
    return value.nbytes


@benchmark("large_results")
def large_results(ctx: Context) -> Figures:
    rows = 1_000_000 if ctx.quick else 8_000_000
    runs = 1 if ctx.quick else 3
    s = ctx.settings
    store = Store(s, max_size=1).open()  # migrates the bench schema
    try:
        with store.connection() as conn:
            conn.execute(RAW_TABLE.encode())
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_DATABASE_URL=s.database_url, ZART_SECRET=SECRET.decode(), ZART_SCHEMA=SCHEMA,
               ZART_WORKERS="0")
    return {case: _case(case, rows, runs, env) for case in ("frame", "random")}


def _case(case: str, rows: int, runs: int, env: dict) -> Figures:
    got: dict[str, list[dict]] = {op: [] for op in OPERATIONS}
    for i in range(runs):
        for op in OPERATIONS:
            got[op].append(_child(op, case, rows, f"bench-large-{case}-{i}", env))
    med = {op: {k: statistics.median(r[k] for r in measured) for k in measured[0]}
           for op, measured in got.items()}
    size = med["zart_checkpoint"]["size"]
    figures = {"value_mb": round(size / 1e6, 1),
               "stored_mb": round(med["zart_checkpoint"]["stored"] / 1e6, 1)}
    for op in OPERATIONS:
        figures[f"{op}_s"] = round(med[op]["seconds"], 3)
    figures["checkpoint_over_raw"] = round(med["zart_checkpoint"]["seconds"]
                                           / med["raw_checkpoint"]["seconds"], 2)
    figures["restore_over_raw"] = round(med["zart_restore"]["seconds"]
                                        / med["raw_restore"]["seconds"], 2)
    figures["raw_checkpoint_client_cpu_s"] = round(med["raw_checkpoint"]["cpu"], 2)
    for op in OPERATIONS:
        figures[f"{op}_peak_in_values"] = round(med[op]["peak"] / size, 2)
    return figures


@benchmark("large_results_tuning")
def large_results_tuning(ctx: Context) -> Figures:
    from zart_nb import payload_codec

    rows = 1_000_000 if ctx.quick else 8_000_000
    runs = 1 if ctx.quick else 3
    store = Store(ctx.settings, max_size=2).open()
    figures: Figures = {}
    chosen = payload_codec.CHUNK, payload_codec.LEVEL
    try:
        for case in ("frame", "random"):
            value = make_value(case, rows)
            for mib in (1, 2, 4, 8, 16):
                for level in (1, 3) if case == "frame" else (1,):
                    payload_codec.CHUNK, payload_codec.LEVEL = mib << 20, level
                    figures[f"{case} {mib} MiB level {level}"] = _tune(store, value, runs)
            payload_codec.CHUNK, payload_codec.LEVEL = chosen
            _storage(store, "MAIN")  # pglz tried on every chunk, as PostgreSQL's default does
            figures[f"{case} {chosen[0] >> 20} MiB level {chosen[1]}, STORAGE MAIN"] = \
                _tune(store, value, runs)
            _storage(store, "EXTERNAL")
    finally:
        payload_codec.CHUNK, payload_codec.LEVEL = chosen
        _storage(store, "EXTERNAL")
        store.close()
    return figures


def _storage(store: Store, kind: str) -> None:
    with store.connection() as conn:
        conn.execute(f"ALTER TABLE chunks ALTER COLUMN data SET STORAGE {kind}".encode())


def _tune(store: Store, value, runs: int) -> Figures:
    from zart_nb.store import results

    checkpoint, restore = [], []
    for _ in range(runs):
        with store.connection() as conn:
            conn.execute("TRUNCATE payloads, payload_chunks, chunks CASCADE")
        start = time.perf_counter()
        stored = results.encode(store, value)
        checkpoint.append(time.perf_counter() - start)
        with store.connection() as conn:
            start = time.perf_counter()
            results.value(conn, None, stored.address)
            restore.append(time.perf_counter() - start)
            size, disk = conn.execute("SELECT sum(length(data)), pg_total_relation_size('chunks') "
                                      "FROM chunks").fetchone()
    return {"checkpoint_s": round(statistics.median(checkpoint), 3),
            "restore_s": round(statistics.median(restore), 3), "stored_mb": round(size / 1e6, 1),
            "on_disk_mb": round(disk / 1e6, 1)}


def _child(op: str, case: str, rows: int, run_id: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.large_results", op, case,
                           str(rows), run_id], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{op} {case} failed:\n{done.stderr}")
    return json.loads(done.stdout)


# -- the measured process -----------------------------------------------------------------
def _status(key: str) -> int:
    """A figure of /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def _measure(op: str, case: str, rows: int, run_id: str) -> dict:
    import pickle

    import pandas  # noqa: F401  imported before the baseline: unpickling a frame needs it
    import psycopg

    from zart_nb import step
    from zart_nb.engine.execute import execute
    from zart_nb.store.connection import get_store

    url = os.environ["ZART_DATABASE_URL"]
    conn = psycopg.connect(url, autocommit=True, options=f"-c search_path={SCHEMA}")
    store = get_store()

    built = []  # the value, built before the timing starts

    @step("large")
    def large():
        return built[0]

    def body():
        return type(large()).__name__

    result: dict = {"size": 0, "stored": 0, "cpu": 0.0}
    base = _status("VmRSS")
    value = None
    if op.endswith("checkpoint"):
        conn.execute(EMPTY)
        value = make_value(case, rows)
        result["size"] = size_of(value)
    _reset_peak()
    before_cpu = time.process_time()
    start = time.perf_counter()
    if op == "zart_checkpoint":
        built.append(value)
        execute(body, name="large", run_id=run_id)
    elif op == "zart_restore":
        out = execute(body, name="large", run_id=run_id, replay_completed=True)
        assert out.report.replayed == ["large"], out.report
    elif op == "raw_checkpoint":
        conn.execute("INSERT INTO raw_results (id, data) VALUES (1, %b)",
                     (pickle.dumps(value, protocol=5),))
    else:
        data = conn.execute("SELECT data FROM raw_results WHERE id = 1", binary=True).fetchone()[0]
        value = pickle.loads(data)
        del data
    result["seconds"] = time.perf_counter() - start
    result["cpu"] = time.process_time() - before_cpu
    result["peak"] = _status("VmHWM") - base
    if op == "zart_checkpoint":
        result["stored"] = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM chunks").fetchone()[0]
    store.close()
    return result


if __name__ == "__main__":
    op, case, rows, run_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(json.dumps(_measure(op, case, rows, run_id)))
